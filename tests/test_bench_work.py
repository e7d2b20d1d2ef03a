"""`saf bench infer` divides the work a backend actually executed by the best matmul peak of any
installed library (issue 22, item 10). Old code divided the dense-equivalent work by numpy's peak, so
the event-driven emulator's fraction said nothing about how close the machine was to its limit."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as Fn

from saf.deploy.backends.registry import run_backend
from saf.deploy.backends.work import dense_equivalent_macs, onnx_macs
from saf.deploy.bench.peak import matmul_peak_gflops
from saf.deploy.verify.inputs import load_inputs
from saf.deploy.main import main



@pytest.fixture(scope="module")
def demo(golden_demo_bundle):
    return golden_demo_bundle, load_inputs(golden_demo_bundle, "digits", None, 30)[0]


def _hits(layer, x: np.ndarray) -> int:
    """Multiply-adds an event-driven synapse executes on inputs x [rows, n_in] (IR order), counted
    independently of the emulator: per nonzero input, the outputs it reaches."""
    k = int(layer.in_pool)
    if layer.kind == "conv":
        c, h, w = layer.in_shape
        co, _, kh, kw = layer.weight.shape
        m = torch.from_numpy((x.reshape(-1, c, h, w) != 0).astype(np.float64))   # in_shape: before the pool
        reach = Fn.conv2d(m, torch.ones(1, c, kh * k, kw * k, dtype=torch.float64),
                          stride=int(layer.stride) * k, padding=int(layer.padding) * k)
        return int(reach.sum()) * co
    if k > 1:
        c, h, w = layer.in_shape
        x = x.reshape(-1, c, h // k, k, w // k, k).sum(axis=(3, 5)).reshape(len(x), -1)
    return int(np.count_nonzero(x)) * int(layer.n_out)


def test_emulator_counts_the_work_it_executes(demo):
    b, xq = demo
    g = b.graph
    r = run_backend("emulator", b, xq)
    assert r.info["schedule"] == "layer-major"
    n, T = len(xq), g.T
    want = _hits(g.layers[0], xq.reshape(n, -1))                 # constant input: one current per sample
    for li in range(1, len(g.spiking_layers)):
        want += _hits(g.layers[li], r.spikes[li - 1].reshape(n * T, -1))
    last = r.spikes[-1]
    want += _hits(g.readout, last.reshape(n * T, -1) if g.readout.decay else last.sum(axis=1))
    assert r.info["macs_executed"] == want
    assert want < dense_equivalent_macs(g) * n / 4                # silent inputs skipped: far below dense


def test_onnx_work_model_counts_the_constant_current_once(demo):
    g = demo[0].graph
    first = g.layers[0]
    assert onnx_macs(g) == dense_equivalent_macs(g) - (g.T - 1) * first.n_out * first.fan_in


def test_peak_is_the_best_installed_library():
    pk = matmul_peak_gflops(n=256, seconds=0.0, min_reps=2)
    assert set(pk["by_library"]) == {"numpy", "torch"}
    assert pk["gflops"] == max(pk["by_library"].values()) and pk["library"] in pk["by_library"]


def test_bench_reports_executed_work_against_the_peak(demo, tmp_path, capsys):
    b, _ = demo
    out = tmp_path / "b.json"
    assert main(["bench", "infer", str(b.path), "--backends", "emulator,onnx", "--limit", "30", "--repeats", "1",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())
    rows = {row["backend"]: row for row in r["rows"]}
    em, on = rows["emulator"], rows["onnx"]
    assert em["macs_counted_by"] == "counted by the backend" and em["macs_per_sample"] < r["dense_macs_per_sample"]
    assert on["macs_counted_by"] == "the backend's work model" and on["macs_per_sample"] == onnx_macs(b.graph)
    assert em["peak_fraction"] < em["dense_peak_fraction"]        # the old figure overstated it
    assert "dense of peak" in text and "torch" in text
