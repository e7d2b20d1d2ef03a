"""Backends as typed records: what each one is (form, whether it reports potentials, its declared
tie comparison and reset, whether the certificate covers it) and how to run it. `saf verify`
decides everything from these fields, never by parsing a name.

Adding a backend is one `register(BackendSpec(...))` call in deploy/backends/registry.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional

from saf.export.ir import declared_mode, modes_text
from saf.export.proof.certificate import CurrentRegister
from saf.core.errors import SafError


STOCK_REGISTER = CurrentRegister(24, 6)   # Lava's stock LIF: u += a_in << 6, wrapping at 24 bits


class BackendError(SafError, ValueError):
    """A backend cannot run on this bundle, or a backend list is unusable (one clear line)."""


class Form(Enum):
    LIF = "integer LIF"          # the deployed form: emulator, ONNX, Lava
    SAF = "integer SAF"          # the accumulation (training) form on the integer weights
    FLOAT = "float"              # the trained float model: compared for accuracy, never spike for spike


@dataclass(frozen=True)
class BackendSpec:
    name: str
    form: Form
    reports_potentials: bool     # its runner can return its own V[t] (record_potentials=True)
    runner: Callable             # (bundle, graph, xq, record_spikes, record_potentials, progress) -> BackendResult
    convention: object           # declared (compare, reset): one export/ir.py Convention it runs on every layer, or
    #                              the frozenset of them it runs per layer as each layer says (None for float forms)
    subset: bool = False         # slow: runs only the first --lava-limit samples
    covered: bool = True         # the certificate's exactness proof covers this implementation
    unavailable: Callable = lambda: ""   # () -> reason it cannot run here, "" when it can
    description: str = ""
    refuses: Callable = lambda graph: ""  # (Graph) -> reason it cannot run this network, "" when it can
    current_register: Optional[CurrentRegister] = None   # its neuron's wrapping input register u, if any:
    #                              verify's certificate bounds it (current_reg row) whatever the target
    fallback: Optional[str] = None   # the backend a DEFAULT list uses instead where this one refuses the
    #                              network (said so in verify's report); an explicit list never swaps
    work: Optional[Callable] = None      # (Graph) -> multiply-adds per sample it executes, for a backend that
                                         # does not count them itself (info["macs_executed"]); None: unknown

    @property
    def integer(self) -> bool:
        return self.form is not Form.FLOAT


BACKENDS: dict = {}


def register(spec: BackendSpec) -> BackendSpec:
    if spec.name in BACKENDS:
        raise ValueError(f"backend {spec.name!r} registered twice")
    if spec.integer and spec.convention is None:
        raise ValueError(f"integer backend {spec.name!r} must declare its tie comparison and reset")
    BACKENDS[spec.name] = spec
    return spec


def mode_refusal(spec: BackendSpec, graph) -> str:
    """Why `spec` cannot run some spiking layer's (compare, reset) of `graph` ("" when it runs them all)."""
    if spec.convention is None:
        return ""
    for layer in graph.spiking_layers:
        if declared_mode(spec.convention, layer.mode) is None:
            return (f"layer {layer.name} has reset {layer.reset!r} / compare {layer.compare!r}, which {spec.name} "
                    f"cannot run (it runs {modes_text(spec.convention)})")
    return ""


def runs_modes(spec: BackendSpec, graph) -> list:
    """The (compare, reset) `spec` runs on each spiking layer of `graph` (None where it cannot run it)."""
    return [declared_mode(spec.convention, l.mode) for l in graph.spiking_layers]


def get_backend(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]


def refusal(spec: BackendSpec, graph) -> str:
    """Why `spec` cannot run `graph` (its own refusal or a layer's mode it cannot run); "" when it can."""
    return spec.refuses(graph) or mode_refusal(spec, graph)


def check_runs(specs: list, graph, flag: str = "") -> None:
    """Refuse, in one line and before anything runs, a backend that cannot run `graph` (checked once per
    run, not per chunk: deploy/verify/stream.py). flag: the flag that named the list, if any."""
    for s in specs:
        why = refusal(s, graph)
        if why:
            raise BackendError(f"{flag + ': ' if flag else ''}{s.name} cannot run this network: {why}")


def resolve_backends(names, flag: str = "--backends") -> list:
    """Specs for a verify backend list: known, available, no duplicates, >= 2 distinct integer backends."""
    names = [n.strip() for n in names if n and n.strip()]
    bad = [n for n in names if n not in BACKENDS]
    if bad or not names:
        raise BackendError(f"{flag}: unknown {', '.join(bad) or '(none given)'} (known: {', '.join(BACKENDS)})")
    return check_specs([BACKENDS[n] for n in names], flag)


def as_specs(backends, flag: str = "--backends") -> list:
    """A backend list of names, records or both -> records, checked by the same rules (check_specs)."""
    backends = list(backends)
    if all(isinstance(b, str) for b in backends):
        return resolve_backends(backends, flag)
    bad = [b for b in backends if not isinstance(b, (str, BackendSpec))]
    if bad:
        raise BackendError(f"{flag}: expected backend names or BackendSpec records, got {type(bad[0]).__name__}")
    return check_specs([get_backend(b) if isinstance(b, str) else b for b in backends], flag)


def check_specs(specs: list, flag: str = "--backends") -> list:
    """The rules every entry point of verify applies to its backend records: no backend twice (by name or
    by record), >= 2 distinct integer backends, each available here."""
    if not specs:
        raise BackendError(f"{flag}: no backends given")
    names = [s.name for s in specs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise BackendError(f"{flag}: {', '.join(dups)} given twice (a backend compared with itself proves nothing)")
    ints = [s.name for s in specs if s.integer]
    if len(ints) < 2:
        known = ", ".join(n for n, s in BACKENDS.items() if s.integer)
        raise BackendError(f"{flag}: need at least two distinct integer backends to compare, got "
                           f"{', '.join(ints) or 'none'} (integer: {known})")
    for s in specs:
        why = s.unavailable()
        if why:
            raise BackendError(f"{flag}: {s.name} cannot run here: {why}")
    return list(specs)


def with_fallbacks(specs: list, graph, flag: str = "--backends") -> tuple:
    """(specs, notes) for a DEFAULT backend list: a backend that refuses `graph` is replaced by its
    fallback (one note each, for the report) or, without one, left out (a note too). Refused with
    one line when fewer than two distinct integer backends remain."""
    out, notes = [], []
    for s in specs:
        why = refusal(s, graph)
        if not why:
            out.append(s)
            continue
        alt = BACKENDS.get(s.fallback) if s.fallback else None
        if alt is not None and not refusal(alt, graph) and alt not in out \
                and alt not in specs:
            out.append(alt)
            notes.append(f"{s.name} replaced by {alt.name} ({alt.description}) in the default backends: "
                         f"{s.name} cannot run this network: {why}")
        else:
            notes.append(f"{s.name} left out of the default backends: {why}")
    if len([s for s in out if s.integer]) < 2:
        raise BackendError(f"{flag}: fewer than two of the default backends can run this network "
                           f"({'; '.join(notes)})")
    return out, notes
