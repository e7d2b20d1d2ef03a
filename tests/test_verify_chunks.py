"""`saf verify --chunk N` (deploy/verify/stream.py): the report is the same whatever the chunk size (the
whole-set run is the reference, and the mismatch counts and first mismatch are recomputed independently
from whole-array runs of two backends), a fault first seen in a later chunk is reported at its global
sample index, no run or comparison ever holds more than one chunk of samples, and the CLI checks --chunk."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import saf.deploy.verify.pairs as pairs_mod
import saf.deploy.verify.stream as stream
from saf.deploy.backends.registry import BACKENDS, Bundle, fault_backend, run_spec
from saf.deploy.verify.inputs import load_inputs
from saf.deploy.main import main
from saf.deploy.verify import verify

GOLDEN = Path(__file__).parent / "golden" / "demo"
FIELDS = ("samples", "accuracy", "firing_rates", "pairs", "golden", "float_to_quantized", "failures", "ok")
N = 24


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "bundle"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--out", str(out)]) == 0
    b = Bundle.load(out)
    xq, y, _ = load_inputs(b, "digits", None, N)
    return out, b, xq, y


def _fields(rep) -> dict:
    return {k: getattr(rep, k) for k in FIELDS}


def _reordered(b, xq):
    """xq with 8 inputs the lsb fault leaves unchanged first: its first effect is at global sample 8."""
    e, f = run_spec(BACKENDS["emulator"], b, xq), run_spec(fault_backend("lsb"), b, xq)
    hit = (e.readout != f.readout).any(1)
    for u, v in zip(e.spikes, f.spikes):
        hit |= (u != v).any(axis=(1, 2))
    assert (~hit).sum() >= 8 and hit.sum() >= 3
    return np.concatenate([xq[~hit][:8], xq[hit]])


def _independent(b, xq) -> dict:
    """emulator vs emulator[lsb] from whole-array runs, counted here (not through compare.py)."""
    e = run_spec(BACKENDS["emulator"], b, xq, record_potentials=True)
    f = run_spec(fault_backend("lsb"), b, xq, record_potentials=True)
    layers = [int(np.count_nonzero(u != v)) for u, v in zip(e.spikes, f.spikes)]
    cells = [(int(s), int(t), li, int(k)) for li, (u, v) in enumerate(zip(e.spikes, f.spikes))
             for s, t, k in np.argwhere(u != v)]
    s, t, li, k = min(cells)                      # ordered by sample, step, layer, neuron
    return {"layers": layers, "readout": int(np.count_nonzero(e.readout != f.readout)), "first": (s, li, t + 1, k),
            "potentials": (int(e.potentials[li][s, t, k]), int(f.potentials[li][s, t, k]))}


@pytest.mark.parametrize("chunk", [1, 7, N + 5])
def test_report_does_not_depend_on_chunk(demo, monkeypatch, chunk):
    _, b, xq, y = demo
    # potentials recorded on the first 10 samples only, so chunks straddle the budget (k = 10)
    monkeypatch.setattr(stream, "POTENTIAL_BUDGET", b.graph.T * sum(l.n_out for l in b.graph.spiking_layers) * 10)
    kw = dict(backends=["saf-int", "emulator", "onnx", "saf-float"], fault="lsb", golden_dir=GOLDEN)
    ref = verify(b, xq, y, chunk=N, **kw)
    rep = verify(b, xq, y, chunk=chunk, **kw)
    assert _fields(rep) == _fields(ref)
    assert rep.samples == {"saf-int": N, "emulator": N, "onnx": N, "saf-float": N, "emulator[lsb]": N}
    assert [g["ok"] for g in rep.golden] == [True, True, True, False]   # the faulty emulator drifts from golden
    pot = [p for p in rep.pairs if "potentials" in p]
    assert pot and all(p["potentials"]["samples"] == 10 for p in pot)
    ind = _independent(b, xq)
    p = next(p for p in rep.pairs if (p["a"], p["b"]) == ("emulator", "emulator[lsb]"))
    assert [l["mismatches"] for l in p["layers"]] == ind["layers"] and sum(ind["layers"]) > 0
    assert p["readout_mismatches"] == ind["readout"]
    f = p["first"]
    assert (f["sample"], f["layer_index"], f["t"], f["neuron"]) == ind["first"]
    assert (f["potential_a"], f["potential_b"]) == ind["potentials"]
    assert not rep.ok


def test_subset_backend_runs_only_on_its_chunks(demo):
    """Lava on the first 9 samples: chunks of 7 run it on 7 + 2; the report equals the whole-set run's."""
    _, b, xq, y = demo
    kw = dict(backends=["saf-int", "emulator", "lava"], lava_limit=9)
    rep, ref = verify(b, xq, y, chunk=7, **kw), verify(b, xq, y, chunk=N, **kw)
    assert _fields(rep) == _fields(ref) and rep.ok
    assert rep.samples["lava"] == 9 and rep.models == ref.models and rep.models
    assert all(p["samples"] == (9 if "lava" in (p["a"], p["b"]) else N) for p in rep.pairs)


@pytest.mark.parametrize("chunk", [5, 1])
def test_fault_in_a_later_chunk_is_reported_at_its_global_index(demo, chunk):
    _, b, xq, y = demo
    x2 = _reordered(b, xq)
    rep = verify(b, x2, None, ["emulator", "onnx"], fault="lsb", chunk=chunk)
    ind = _independent(b, x2)
    assert ind["first"][0] == 8
    p = next(p for p in rep.pairs if p["b"] == "emulator[lsb]" and p["a"] == "emulator")
    f = p["first"]
    assert (f["sample"], f["layer_index"], f["t"], f["neuron"]) == ind["first"]
    assert (f["potential_a"], f["potential_b"]) == ind["potentials"]
    assert [l["mismatches"] for l in p["layers"]] == ind["layers"]
    assert any(f"first at sample 8, layer {f['layer']}, t={f['t']}" in x for x in rep.failures)


def test_no_run_or_comparison_holds_more_than_a_chunk(demo, monkeypatch):
    _, b, xq, y = demo
    seen = {"run": [], "compare": []}
    run, cmp = stream.run_checked, pairs_mod.compare_pair

    def run_rec(spec, bundle, x, *a, **k):
        seen["run"].append(len(x))
        return run(spec, bundle, x, *a, **k)

    def cmp_rec(a, b_, names):
        seen["compare"].append(max(len(s) for s in a.spikes + b_.spikes))
        return cmp(a, b_, names)
    monkeypatch.setattr(stream, "run_checked", run_rec)
    monkeypatch.setattr(pairs_mod, "compare_pair", cmp_rec)
    verify(b, xq, y, ["saf-int", "emulator", "onnx"], fault="tie", chunk=5)
    assert max(seen["run"]) == 5 and max(seen["compare"]) == 5 and len(seen["compare"]) == 6 * 5
    seen = {"run": [], "compare": []}
    verify(b, xq, y, ["saf-int", "emulator", "onnx"], chunk=N)       # the recorder sees a whole-set run
    assert max(seen["run"]) == N and max(seen["compare"]) == N


def test_cli_chunk(demo, tmp_path, capsys):
    bundle = demo[0]
    argv = ["verify", str(bundle), "--backends", "saf-int,emulator", "--limit", "12", "--no-progress"]
    assert main(argv + ["--chunk", "5", "--out", str(tmp_path / "v"), "--report", str(tmp_path / "v" / "r.md")]) == 0
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rep["chunk"] == 5 and rep["peak_rss_mib"] > 0 and rep["samples"] == {"saf-int": 12, "emulator": 12}
    assert "chunks of 5 samples; process peak resident memory" in out and "seconds per backend" in out
    assert "compared 5 at a time; the process's peak resident memory" in (tmp_path / "v" / "r.md").read_text()
    assert main(argv + ["--chunk", "0", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "--chunk must be >= 1, got 0" in err and err.count("\n") == 1 and not (tmp_path / "w").exists()


def test_approximate_section_does_not_depend_on_chunk(tmp_path):
    """An --approximate bundle: the agreement table with the float model, counted chunk by chunk, equals
    the whole-set one and the agreement computed here from whole-array runs."""
    out = tmp_path / "approx"
    assert main(["export", str(GOLDEN / "model.safetensors"), "--target", "loihi", "--out", str(out), "--T", "16",
                 "--calibrate-data", "digits", "--approximate"]) == 0
    b = Bundle.load(out)
    xq, y, _ = load_inputs(b, "digits", None, N)
    ref, rep = (verify(b, xq, y, ["emulator", "onnx"], chunk=c) for c in (N, 7))
    assert rep.approximate == ref.approximate and rep.approximate["samples"] == N
    em, fl = run_spec(BACKENDS["emulator"], b, xq), run_spec(BACKENDS["saf-float"], b, xq)
    assert [r["agreement"] for r in rep.approximate["layers"]] == [float((a == f).mean())
                                                                   for a, f in zip(em.spikes, fl.spikes)]
    assert min(r["agreement"] for r in rep.approximate["layers"]) < 1.0
    assert rep.approximate["prediction_agreement"] == float((em.predictions == fl.predictions).mean())
