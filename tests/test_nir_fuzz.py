"""Fuzz of `saf import` (issue 29 item 4): every damaged NIR file is refused in one line naming it, exit 2,
nothing written; or it imports (exit 0) into a run directory that loads. Never an internal error.

Valid files, written by the real `nir` package (a snnTorch RLeaky net through snnTorch's export_to_nir, an IDE
run through `saf export --target nir`, and hand-built graphs with Conv2d, Flatten, Linear, Affine, Scale, LIF,
CubaLIF, IF, LI, I, SumPool2d and AvgPool2d nodes) are mutated, seeded, into a fixed set of files: bytes
flipped, the file truncated, NaN/inf/negative/huge/zero/fractional/string/complex/wrong-shape/empty values
written with h5py into every dataset of every node, nodes deleted, edges dropped, pointed at missing nodes,
closing cycles, empty graphs, and the graph metadata `saf` given wrong types and values."""
from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

import nir  # noqa: E402

from saf.deploy.main import main  # noqa: E402

SEED = 29
FLIPS, TRUNCATIONS, STRUCTURE = 8, 4, 3     # per base file: byte-flipped, truncated, each structural edit
KINDS_EACH = 3                               # value kinds written into each dataset
EXPORTS = 3                                  # imported mutants exported for Loihi
HUGE = 1e300                         # finite in float64, inf in float32
LARGE = 1e30                         # finite in float32, far beyond any weight, size or time constant


def _lif(shape, tau=2e-4, r=2.0):
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, r), v_leak=np.zeros(shape),
                   v_threshold=np.ones(shape), v_reset=np.zeros(shape))


def _if(shape):
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))


def _conv(rng):
    return nir.Conv2d(input_shape=np.array([8, 8]), weight=rng.normal(0, 0.3, (4, 1, 3, 3)), stride=np.array([1, 1]),
                      padding=np.array([1, 1]), dilation=np.array([1, 1]), groups=1, bias=rng.normal(0, 0.1, 4))


def _chain(names_nodes: list, metadata=None):
    nodes = dict(names_nodes)
    names = [n for n, _ in names_nodes]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata=metadata or {})


def _hand_built() -> dict:
    """name -> NIRGraph, each one saf imports."""
    rng = np.random.default_rng(SEED)
    img = {"input": np.array([1, 8, 8])}
    conv_lif = _chain([
        ("in", nir.Input(input_type=img)), ("conv", _conv(rng)), ("lif", _lif((4, 8, 8))),
        ("pool", nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
        ("flat", nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1)),
        ("fc", nir.Affine(weight=rng.normal(0, 0.2, (16, 64)), bias=rng.normal(0, 0.1, 16))), ("lif2", _lif(16)),
        ("ro", nir.Linear(weight=rng.normal(0, 0.3, (10, 16)))),
        ("li", nir.LI(tau=np.full(10, 2e-4), r=np.full(10, 2.0), v_leak=np.zeros(10))),
        ("out", nir.Output(output_type={"output": np.array([10])}))])
    conv_if = _chain([
        ("in", nir.Input(input_type=img)), ("conv", _conv(rng)), ("if", _if((4, 8, 8))),
        ("pool", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
        ("flat", nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1)),
        ("fc", nir.Affine(weight=rng.normal(0, 0.2, (16, 64)), bias=rng.normal(0, 0.1, 16))), ("if2", _if(16)),
        ("ro", nir.Affine(weight=rng.normal(0, 0.3, (10, 16)), bias=np.zeros(10))), ("i", nir.I(r=np.ones(10))),
        ("out", nir.Output(output_type={"output": np.array([10])}))])
    n = 32
    cuba = _chain([
        ("in", nir.Input(input_type={"input": np.array([16])})),
        ("fc", nir.Linear(weight=rng.normal(0, 0.3, (n, 16)))), ("sc", nir.Scale(scale=np.full(n, 2.0))),
        ("cuba", nir.CubaLIF(tau_syn=np.full(n, 2e-4), tau_mem=np.full(n, 2e-4), r=np.full(n, 2.0), w_in=np.full(n, 2.0),
                             v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))),
        ("ro", nir.Affine(weight=rng.normal(0, 0.3, (10, n)), bias=np.zeros(10))),
        ("out", nir.Output(output_type={"output": np.array([10])}))],
        metadata={"saf": json.dumps({"format": "saf-nir-1", "dt": 1e-4, "T": 4, "reset": "subtract",
                                     "compare": "ge", "encoder": "constant", "dataset": "digits"})})
    return {"conv-lif-sumpool": conv_lif, "conv-if-avgpool": conv_if, "cuba-scale-meta": cuba}


def _fp_graph():
    """An FP network (CubaLIF layers, first-spike readout) as `saf export --target nir` writes it (export/nir/fp.py)."""
    from saf.export.nir.fp import fp_graph
    from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode

    rng = np.random.default_rng(SEED)
    code = LatencyCode((0.0,) * 4, (1.0,) * 4, 0.0, 1.0, (0.5,)).check()
    net = FPNet(FPParams(alpha=1.0, beta=1.0, theta=1.0, t_max=1.0, t_sim=2.0).check(),
                [rng.normal(0, 1, (8, 5)), rng.normal(0, 1, (3, 8))], code)
    return fp_graph(net, {"dataset": "iris", "method": "fp"})


def _bases(root: Path) -> dict:
    """name -> a valid NIR file under root."""
    import torch
    from nir_nets import export_snntorch, snntorch_net

    from conftest import GOLDEN

    out = {}
    for name, g in _hand_built().items():
        out[name] = root / f"{name}.nir"
        nir.write(str(out[name]), g)
    torch.manual_seed(SEED)
    out["snntorch-rleaky"] = root / "snntorch-rleaky.nir"
    export_snntorch(snntorch_net(recurrent=True, seed=SEED), out["snntorch-rleaky"])
    out["saf-fp"] = root / "saf-fp.nir"
    nir.write(str(out["saf-fp"]), _fp_graph())
    out["saf-ide"] = root / "saf-ide.nir"
    assert main(["export", str(GOLDEN.parent / "ide-digits" / "model.safetensors"), "--target", "nir",
                 "--out", str(out["saf-ide"])]) == 0
    return out


# --- mutations -------------------------------------------------------------------------------------------

def _datasets(path: Path) -> list:
    """Names of every dataset under /node (node parameters, types, shapes, edges, metadata)."""
    names = []
    with h5py.File(path, "r") as f:
        f["node"].visititems(lambda n, o: names.append("node/" + n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


def _value(kind: str, old):
    """The value `kind` writes in place of dataset value `old`."""
    a = np.asarray(old)
    shape = a.shape
    num = a.dtype.kind in "biuf"
    if kind in ("nan", "inf", "-inf", "huge", "large", "zero"):
        return np.full(shape, {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": HUGE, "large": LARGE,
                               "zero": 0.0}[kind])
    if kind == "negative":
        return -np.abs(a.astype(np.float64)) - 1.0 if num else np.full(shape, -1.0)
    if kind == "fraction":
        return a.astype(np.float64) + 0.5 if num else np.full(shape, 0.5)
    if kind == "string":
        return np.full(shape, "1x", dtype=object) if shape else "1x"
    if kind == "complex":
        return (a.astype(np.complex128) + 1j) if num else np.full(shape, 1 + 1j)
    if kind == "shape":
        flat = a.ravel()
        return np.concatenate([flat, flat[:1]]) if flat.size else np.zeros(2)
    if kind == "empty":
        return np.zeros((0,), dtype=a.dtype if num else np.float64)
    raise AssertionError(kind)


VALUE_KINDS = ("nan", "inf", "-inf", "negative", "huge", "large", "zero", "fraction", "string", "complex", "shape", "empty")


def _write_dataset(f, name: str, v) -> None:
    del f[name]
    if isinstance(v, np.ndarray) and v.dtype == object or isinstance(v, str):
        f.create_dataset(name, data=v, dtype=h5py.string_dtype())
    else:
        f.create_dataset(name, data=v)


def _edit(src: Path, dst: Path, fn) -> None:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)


def _edits(f, values: dict) -> None:
    for name, v in values.items():
        _write_dataset(f, name, v)


def _edges(f) -> list:
    return [(a.decode(), b.decode()) for a, b in f["node/edges"][()]] if f["node/edges"].size else []


def _set_edges(f, edges) -> None:
    del f["node/edges"]
    f.create_dataset("node/edges", data=np.array(edges, dtype=object).reshape(-1, 2), dtype=h5py.string_dtype())


def _empty(f, names) -> None:
    for n in names:
        del f[f"node/nodes/{n}"]
    _set_edges(f, [])


def _set_meta(f, text) -> None:
    if "node/metadata/saf" in f:
        del f["node/metadata/saf"]
    if isinstance(text, str):
        f.create_dataset("node/metadata/saf", data=text, dtype=h5py.string_dtype())
    else:
        f.create_dataset("node/metadata/saf", data=text)


META_FIELDS = {"T": ["6", -1, 0, 1.5, 1e12, True, None, [6]], "dt": ["1e-4", -1e-4, 0, float("nan"), float("inf"), 1e300, True, [1]],
               "reset": [5, "bogus", None, ["zero"]], "compare": [1, "lt", ["gt"]], "encoder": [3, "bogus", ["rate"]],
               "dataset": [7, "nope", ["digits"], ""], "method": ["fp", "dsr", 3, "ide"],
               "dsr": [{"alpha": "x", "readout": "spike"}, {"alpha": float("inf"), "readout": "linear"}, [1], 2,
                       {"alpha": 0.5, "readout": "spike"}],
               "fp_params": [{}, {"alpha": "x"}, None, [1]]}


FP_FIELDS = {"config": [[1], "abc", 3, None], "fp_params": ["x", [1], {"alpha": 1.0}, None],
             "fp_code": ["x", [1], {"lo": "abc", "hi": [1], "t_early": 0, "t_late": 1}, {"lo": [0] * 4, "hi": [1] * 4,
                                                                                        "t_early": "0", "t_late": 1}]}


def _meta_texts() -> list:
    base = {"format": "saf-nir-1", "dt": 1e-4, "T": 6, "reset": "subtract", "compare": "ge",
            "encoder": "constant", "dataset": "digits"}
    out = ["{not json", "[1, 2]", "3", '"text"', "null", json.dumps({"method": "fp"})]
    for k, vals in META_FIELDS.items():
        out += [json.dumps(dict(base, **{k: v})) for v in vals]
    return out


def _mutants(bases: dict, root: Path) -> list:
    """[(category, path)], the same list on every run (seeded)."""
    rng = random.Random(SEED)
    out, rot = [], 0

    def add(cat, base, tag, fn=None, data=None):
        p = root / f"{base}--{cat}--{tag}.nir".replace("/", "_")
        if data is not None:
            p.write_bytes(data)
        else:
            _edit(bases[base], p, fn)
        out.append((cat, p))

    for b, path in bases.items():
        raw = path.read_bytes()
        for i in range(FLIPS):
            buf = bytearray(raw)
            for _ in range(rng.choice((1, 4, 32))):
                j = rng.randrange(len(buf))
                buf[j] ^= 1 << rng.randrange(8)
            add("byte flips", b, str(i), data=bytes(buf))
        for i in range(TRUNCATIONS):
            add("truncation", b, str(i), data=raw[:rng.randrange(len(raw))])
        values = [d for d in _datasets(path) if not (d.endswith("/type") or d == "node/edges"
                                                      or d.startswith("node/metadata"))]   # those: below
        for j, d in enumerate(values):             # every dataset, KINDS_EACH kinds each, in turn over VALUE_KINDS
            for k in (VALUE_KINDS[(rot + j + i) % len(VALUE_KINDS)] for i in range(KINDS_EACH)):
                def fn(f, d=d, k=k):
                    _write_dataset(f, d, _value(k, f[d][()]))
                add(f"value {k}", b, d + "-" + k, fn)
        with h5py.File(path, "r") as f:
            names = sorted(f["node/nodes"])
            edges = _edges(f)
        rot += len(values) * KINDS_EACH
        for n in rng.sample(names, STRUCTURE):
            add("deleted node", b, n, lambda f, n=n: f.__delitem__(f"node/nodes/{n}"))
        for n in rng.sample(names, 2):
            add("node type", b, n, lambda f, n=n: _write_dataset(f, f"node/nodes/{n}/type", "Delay"))
        for i in rng.sample(range(len(edges)), STRUCTURE):
            e = edges[i]
            add("dropped edge", b, str(i), lambda f, i=i: _set_edges(f, edges[:i] + edges[i + 1:]))
            add("edge to missing node", b, str(i), lambda f, i=i, e=e: _set_edges(f, edges[:i] + [(e[0], "ghost")] + edges[i + 1:]))
            add("edge from missing node", b, str(i), lambda f, i=i, e=e: _set_edges(f, edges[:i] + [("ghost", e[1])] + edges[i + 1:]))
        for i in range(STRUCTURE):
            a, c = rng.sample(names, 2)
            add("cycle", b, str(i), lambda f, a=a, c=c: _set_edges(f, edges + [(a, c), (c, a)]))
        add("empty graph", b, "no nodes", lambda f: _empty(f, names))
        add("empty graph", b, "no edges", lambda f: _set_edges(f, []))
        add("empty graph", b, "in-out", lambda f: _set_edges(f, [(names[0], names[-1])]))
        add("edges dataset", b, "numbers", lambda f: _write_dataset(f, "node/edges", np.ones((2, 2))))
        add("edges dataset", b, "three columns", lambda f: _write_dataset(f, "node/edges", np.array(
            [e + ("x",) for e in edges], dtype=object)))
    for i, text in enumerate(_meta_texts()):
        add("graph metadata", "saf-ide", str(i), lambda f, text=text: _set_meta(f, text))
    fp = json.loads(nir.read(str(bases["saf-fp"])).metadata["saf"])
    for i, (k, v) in enumerate((k, v) for k, vals in FP_FIELDS.items() for v in vals):
        add("graph metadata", "saf-fp", f"{k}-{i}", lambda f, k=k, v=v: _set_meta(f, json.dumps(dict(fp, **{k: v}))))
    add("graph metadata", "saf-ide", "number", lambda f: _set_meta(f, np.float64(3.0)))
    add("graph metadata", "saf-ide", "array", lambda f: _set_meta(f, np.arange(3)))
    return out


# --- the test ---------------------------------------------------------------------------------------------

def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _loads(run: Path) -> None:
    from saf.train.checkpoint import is_fp_checkpoint, load_model
    if is_fp_checkpoint(run):
        from saf.train.methods.fp.checkpoint import load_fp_checkpoint
        load_fp_checkpoint(run / "model.safetensors")
    else:
        load_model(run)


def _import(src: Path, out: Path, capsys, force=False) -> tuple:
    capsys.readouterr()
    rc = main(["import", str(src), "--out", str(out)] + (["--force"] if force else []))
    cap = capsys.readouterr()
    return rc, cap.err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("nirfuzz")
    (root / "bases").mkdir()
    (root / "mutants").mkdir()
    bases = _bases(root / "bases")
    return bases, _mutants(bases, root / "mutants")


def test_every_base_file_imports(corpus, tmp_path, capsys):
    """The mutated files differ from importable ones (each base imports, exit 0, and the run loads)."""
    bases, _ = corpus
    for name, path in bases.items():
        rc, err = _import(path, tmp_path / name, capsys)
        assert rc == 0, err
        _loads(tmp_path / name)


def _one(src: Path, work: Path, prior: Path, prior_tree: dict, force: bool, capsys) -> tuple:
    """("refused" | "imported", None) when `saf import src` behaved, else (what, the problem)."""
    out = work / "run"
    if force:
        shutil.copytree(prior, out)
    rc, err = _import(src, out, capsys, force)
    if rc not in (0, 2):
        return "internal", f"exit {rc}: {err.strip()}"
    if "Traceback" in err:
        return "traceback", err
    if rc == 2:
        if len(err.strip().splitlines()) != 1 or not err.startswith("saf import: error: ") or src.name not in err:
            return "not one line naming the file", err
        if (_tree(out) != prior_tree) if force else out.exists():
            return "wrote at --out", err
        if sorted(p.name for p in work.iterdir()) != (["run"] if force else []):
            return "left files beside --out", sorted(p.name for p in work.iterdir())
        return "refused", None
    try:
        _loads(out)
    except Exception as e:  # noqa: BLE001 - any failure to load the imported run is the defect reported
        return "imported run does not load", f"{type(e).__name__}: {e}"
    return "imported", None


def _export(run: Path, out: Path, capsys) -> tuple:
    capsys.readouterr()
    rc = main(["export", str(run), "--target", "loihi", "--calibrate-limit", "40", "--out", str(out)])
    return rc, capsys.readouterr().err


def test_mutated_nir_files_are_refused_in_one_line_or_import(corpus, tmp_path, capsys):
    """Each file: exit 2 with one line naming it, nothing at --out (a missing --out stays missing, a saf run
    there with --force stays byte for byte), no temporary left beside it; or exit 0 and the run loads. A seeded
    sample of the imported runs exports for Loihi or is refused in one line. No other outcome, ever."""
    bases, mutants = corpus
    assert len(mutants) >= 300
    prior = tmp_path / "prior"                       # a run saf wrote: --force over it must keep it on refusal
    assert _import(bases["conv-if-avgpool"], prior, capsys)[0] == 0
    prior_tree = _tree(prior)
    seen, outcome, problems, imported = Counter(), Counter(), [], []
    for i, (cat, src) in enumerate(mutants):
        seen[cat] += 1
        work = tmp_path / f"w{i}"
        work.mkdir()
        what, problem = _one(src, work, prior, prior_tree, i % 7 == 0, capsys)
        outcome[(cat, what)] += 1
        if problem is not None:
            problems.append(f"{what}: {src.name}: {problem}")
        if what == "imported" and cat != "graph metadata":
            imported.append(work / "run")
        else:
            shutil.rmtree(work)
    report = "\n".join(f"{cat:24s} {n:4d} files: " + ", ".join(f"{outcome[(c, w)]} {w}" for c, w in sorted(outcome)
                                                               if c == cat) for cat, n in sorted(seen.items()))
    with capsys.disabled():
        print("\n" + report)
    assert problems == [], "\n".join(problems)
    assert all(n >= 10 for n in seen.values()), report
    assert sum(n for (c, w), n in outcome.items() if w == "refused") >= 300, report
    for j, run in enumerate(random.Random(SEED).sample(imported, EXPORTS)):
        rc, err = _export(run, tmp_path / f"bundle{j}", capsys)
        assert rc == 0 or (rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err), (run, rc, err)


# --- the defects the fuzz found, one file each (each was an internal error, a run that does not load, or a
# message naming a flag nobody gave, before the reader validated what it reads) -------------------------------

def _meta(**kw) -> str:
    return json.dumps(dict({"format": "saf-nir-1", "dt": 1e-4, "T": 6, "reset": "subtract", "compare": "ge"}, **kw))


DEFECTS = {
    # name: (base graph, edit of the written file, words the one line must hold)
    "string bias": ("conv-lif-sumpool", lambda f: _write_dataset(f, "node/nodes/conv/bias", np.full(4, "1x", object)),
                    ["'conv'", "bias", "not real numbers"]),
    "infinite groups": ("conv-if-avgpool", lambda f: _write_dataset(f, "node/nodes/conv/groups", np.inf),
                        ["'conv'", "groups", "NaN or inf"]),
    "complex weight": ("conv-if-avgpool", lambda f: _write_dataset(f, "node/nodes/fc/weight",
                                                                   f["node/nodes/fc/weight"][()] + 1j), ["'fc'", "complex"]),
    "empty end_dim": ("conv-lif-sumpool", lambda f: _write_dataset(f, "node/nodes/flat/end_dim", np.zeros(0, int)),
                      ["'flat'", "end_dim", "empty"]),
    "tau = -inf read as beta = 1": ("conv-lif-sumpool", lambda f: _edits(f, {f"node/nodes/{n}/{a}": v for n, shape in (
        ("lif", (4, 8, 8)), ("lif2", 16), ("li", 10)) for a, v in (("tau", np.full(shape, -np.inf)), ("r", np.ones(shape)))}),
        ["tau holds NaN or inf"]),
    "huge bias": ("conv-if-avgpool", lambda f: _write_dataset(f, "node/nodes/fc/bias", np.full(16, HUGE)),
                  ["'fc'", "bias", "float32"]),
    "folded weight overflows float32": ("conv-lif-sumpool", lambda f: _write_dataset(
        f, "node/nodes/lif2/v_threshold", np.full(16, 1e-40)), ["blocks.1.weight", "float32"]),
    "metadata T a list": ("cuba-scale-meta", lambda f: _set_meta(f, _meta(T=[6])), ["graph metadata 'saf' T", "[6]"]),
    "metadata reset a list": ("cuba-scale-meta", lambda f: _set_meta(f, _meta(reset=["zero"])), ["'saf' reset"]),
    "metadata compare a list": ("cuba-scale-meta", lambda f: _set_meta(f, _meta(compare=["gt"])), ["'saf' compare"]),
    "metadata dt infinite": ("cuba-scale-meta", lambda f: _set_meta(f, _meta(dt=float("inf"))), ["'saf' dt", "inf"]),
    "metadata dsr a list": ("cuba-scale-meta", lambda f: _set_meta(f, _meta(dsr=[1])), ["'dsr'", "alpha"]),
    "FP metadata config a list": ("saf-fp", lambda f: _set_meta(f, json.dumps(dict(json.loads(
        f["node/metadata/saf"][()]), config=[1]))), ["FP graph", "config [1]"]),
}


@pytest.mark.parametrize("case", list(DEFECTS))
def test_found_defect_is_refused_in_one_line(case, tmp_path, capsys):
    base, edit, words = DEFECTS[case]
    good = tmp_path / "good.nir"
    nir.write(str(good), _fp_graph() if base == "saf-fp" else _hand_built()[base])
    src = tmp_path / "bad.nir"
    _edit(good, src, edit)
    rc, err = _import(src, tmp_path / "run", capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(src) in err, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "run").exists()
