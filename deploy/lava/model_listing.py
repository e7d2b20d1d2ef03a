"""Which Lava Process and ProcessModel classes ran, per layer, and which parts are the toolchain's own.

Read from the compiled Processes (`Process.model_class` is set by Lava's compiler), never asserted:
a model whose module is ours but whose Process is Lava's is reported as a subclass of the Lava model
it derives from, with the methods it overrides (read from the class itself). No Lava import here.
"""
from __future__ import annotations


def _cls(c) -> str:
    return f"{c.__module__}.{c.__qualname__}"


def _ours(c) -> bool:
    return c.__module__.split(".")[0] == "saf"


def describe_part(role: str, proc, encoding: str = None) -> dict:
    """{role, process, model, own_code[, model_base][, encoding]} for one compiled Process."""
    m = proc.model_class
    d = {"role": role, "process": _cls(type(proc)), "model": _cls(m)}
    if not _ours(m):
        d["own_code"] = "none (Lava's Process and ProcessModel)"
    elif _ours(type(proc)):
        d["own_code"] = "Process and ProcessModel"
    else:
        base = next(b for b in m.__mro__[1:] if not _ours(b))
        over = sorted(k for k, v in vars(m).items() if callable(v) and not k.startswith("__"))
        d["model_base"] = _cls(base)
        d["own_code"] = f"ProcessModel subclass of {_cls(base)} overriding only {', '.join(over)}"
    if encoding:
        d["encoding"] = encoding
    return d


def format_models(models: list, indent: str = "  ") -> list:
    """Text lines: one per layer, each part as 'role: Process / Model (own code)'."""
    lines = []
    for layer in models:
        parts = []
        for p in layer["parts"]:
            own = "" if p["own_code"].startswith("none") else f" [own: {p['own_code']}]"
            parts.append(f"{p['role']}: {p['process']} / {p['model']}{own}")
        lines.append(f"{indent}{layer['layer']:<10} " + f"\n{indent}{'':<10} ".join(parts))
    return lines
