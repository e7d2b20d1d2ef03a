"""Valid NIR files and their seeded mutants for tests/test_nir_fuzz.py: the valid ones written by the real `nir`
package (hand-built graphs with Conv2d, Flatten, Linear, Affine, Scale, LIF, CubaLIF, IF, LI, I, SumPool2d and
AvgPool2d nodes; a snnTorch RLeaky net through snnTorch's export_to_nir; an FP network as export/nir/fp.py writes
it; an IDE run through `saf export --target nir`), the mutants edited with h5py or as bytes."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import h5py
import numpy as np

import nir

from saf.deploy.main import main

SEED = 29
FLIPS, TRUNCATIONS, STRUCTURE = 8, 4, 3     # per base file: byte-flipped, truncated, each structural edit
KINDS_EACH = 3                               # value kinds written into each dataset
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


def hand_built() -> dict:
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


def fp_graph():
    """An FP network (CubaLIF layers, first-spike readout) as `saf export --target nir` writes it (export/nir/fp.py)."""
    from saf.export.nir.fp import fp_graph
    from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode

    rng = np.random.default_rng(SEED)
    code = LatencyCode((0.0,) * 4, (1.0,) * 4, 0.0, 1.0, (0.5,)).check()
    net = FPNet(FPParams(alpha=1.0, beta=1.0, theta=1.0, t_max=1.0, t_sim=2.0).check(),
                [rng.normal(0, 1, (8, 5)), rng.normal(0, 1, (3, 8))], code)
    return fp_graph(net, {"dataset": "iris", "method": "fp"})


def base_files(root: Path) -> dict:
    """name -> a valid NIR file under root."""
    import torch
    from saf_test_helpers.nir_nets import export_snntorch, snntorch_net

    from saf_test_helpers.golden import GOLDEN

    out = {}
    for name, g in hand_built().items():
        out[name] = root / f"{name}.nir"
        nir.write(str(out[name]), g)
    torch.manual_seed(SEED)
    out["snntorch-rleaky"] = root / "snntorch-rleaky.nir"
    export_snntorch(snntorch_net(recurrent=True, seed=SEED), out["snntorch-rleaky"])
    out["saf-fp"] = root / "saf-fp.nir"
    nir.write(str(out["saf-fp"]), fp_graph())
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


def write_dataset(f, name: str, v) -> None:
    del f[name]
    if isinstance(v, np.ndarray) and v.dtype == object or isinstance(v, str):
        f.create_dataset(name, data=v, dtype=h5py.string_dtype())
    else:
        f.create_dataset(name, data=v)


def edit(src: Path, dst: Path, fn) -> None:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)


def edits(f, values: dict) -> None:
    for name, v in values.items():
        write_dataset(f, name, v)


def _edges(f) -> list:
    return [(a.decode(), b.decode()) for a, b in f["node/edges"][()]] if f["node/edges"].size else []


def _set_edges(f, edges) -> None:
    del f["node/edges"]
    f.create_dataset("node/edges", data=np.array(edges, dtype=object).reshape(-1, 2), dtype=h5py.string_dtype())


def _empty(f, names) -> None:
    for n in names:
        del f[f"node/nodes/{n}"]
    _set_edges(f, [])


def set_meta(f, text) -> None:
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


def mutant_files(bases: dict, root: Path) -> list:
    """[(category, path)], the same list on every run (seeded)."""
    rng = random.Random(SEED)
    out, rot = [], 0

    def add(cat, base, tag, fn=None, data=None):
        p = root / f"{base}--{cat}--{tag}.nir".replace("/", "_")
        if data is not None:
            p.write_bytes(data)
        else:
            edit(bases[base], p, fn)
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
                    write_dataset(f, d, _value(k, f[d][()]))
                add(f"value {k}", b, d + "-" + k, fn)
        with h5py.File(path, "r") as f:
            names = sorted(f["node/nodes"])
            edges = _edges(f)
        rot += len(values) * KINDS_EACH
        for n in rng.sample(names, STRUCTURE):
            add("deleted node", b, n, lambda f, n=n: f.__delitem__(f"node/nodes/{n}"))
        for n in rng.sample(names, 2):
            add("node type", b, n, lambda f, n=n: write_dataset(f, f"node/nodes/{n}/type", "Delay"))
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
        add("edges dataset", b, "numbers", lambda f: write_dataset(f, "node/edges", np.ones((2, 2))))
        add("edges dataset", b, "three columns", lambda f: write_dataset(f, "node/edges", np.array(
            [e + ("x",) for e in edges], dtype=object)))
    for i, text in enumerate(_meta_texts()):
        add("graph metadata", "saf-ide", str(i), lambda f, text=text: set_meta(f, text))
    fp = json.loads(nir.read(str(bases["saf-fp"])).metadata["saf"])
    for i, (k, v) in enumerate((k, v) for k, vals in FP_FIELDS.items() for v in vals):
        add("graph metadata", "saf-fp", f"{k}-{i}", lambda f, k=k, v=v: set_meta(f, json.dumps(dict(fp, **{k: v}))))
    add("graph metadata", "saf-ide", "number", lambda f: set_meta(f, np.float64(3.0)))
    add("graph metadata", "saf-ide", "array", lambda f: set_meta(f, np.arange(3)))
    return out


