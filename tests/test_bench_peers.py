"""`saf bench infer --peers`: the emulator, onnx, the float LIF form in torch and snnTorch on the pinned demo
network; the snnTorch rebuild computes the torch LIF form's readout (a wrong threshold is caught); snnTorch
absent is a note, not a failure. No timing assertions."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from saf.deploy.bench.peers import PEERS, SnnTorchNet, bench_peers, format_peers
from saf.deploy.main import main
from saf.export.bundle.store import SOURCE_FILE
from saf.train.checkpoint import load_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def res(golden_demo_bundle):
    return bench_peers(golden_demo_bundle.path, limit=40, repeats=1, threads=1)


def _float_net(bundle):
    net, _, _ = load_model(f"{bundle.path}/{SOURCE_FILE}")
    return net.float().eval()


def test_every_peer_runs_and_agrees_with_the_emulator(res):
    rows = {r["peer"]: r for r in res["rows"]}
    assert list(rows) == list(PEERS) and all(r["available"] for r in rows.values())
    for p, r in rows.items():
        assert r["samples"] == 40 and r["samples_per_s"] > 0 and len(r["times_s"]) == 1
        assert r["agree_with_emulator"] >= 0.9, (p, r["agree_with_emulator"])   # the same network
    assert rows["emulator"]["agree_with_emulator"] == 1.0 and rows["emulator"]["emulator_speedup"] == 1.0
    assert res["threads"]["torch"] == 1 and res["T"] == 6
    text = format_peers(res)
    assert "snntorch" in text and "torch-lif" in text and "same pred as emulator" in text
    json.dumps(res)


def test_snntorch_rebuild_predicts_as_the_torch_lif_form_and_a_wrong_one_is_caught(golden_demo_bundle):
    """snn.Leaky differs from our LIF form only in ties and while a post-reset potential stays above
    threshold (peers.py's docstring): the predictions agree on nearly every input; a doubled threshold
    (a wrong rebuild) does not."""
    b = golden_demo_bundle
    net = _float_net(b)
    from saf.deploy.verify.inputs import load_inputs
    xq, _, _ = load_inputs(b, None, None, 60)
    x = torch.from_numpy(np.asarray(xq, np.float32) / np.float32(b.graph.input_scale))
    T = b.graph.T
    ref = net.infer(x, T, "lif")[0].numpy().argmax(1)
    assert np.mean(SnnTorchNet(net)(x, T).numpy().argmax(1) == ref) >= 0.95
    wrong = SnnTorchNet(net)
    for lif in wrong.lifs:                              # fault: the threshold doubled
        lif.threshold = lif.threshold * 2
    assert np.mean(wrong(x, T).numpy().argmax(1) == ref) < 0.8


def test_snntorch_absent_is_a_note(golden_demo_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "snntorch", None)      # `import snntorch` now raises ImportError
    r = bench_peers(golden_demo_bundle.path, limit=8, repeats=1, threads=1, peers=("emulator", "snntorch"))
    rows = {q["peer"]: q for q in r["rows"]}
    assert rows["emulator"]["available"] and not rows["snntorch"]["available"]
    assert "not importable" in rows["snntorch"]["note"] and "not available" in format_peers(r)


def test_cli_peers(golden_demo_bundle, tmp_path, capsys):
    out = tmp_path / "peers.json"
    rc = main(["bench", "infer", str(golden_demo_bundle.path), "--peers", "--limit", "8", "--repeats", "1",
               "--threads", "1", "--out", str(out)])
    assert rc == 0 and "emulator x" in capsys.readouterr().out
    assert json.loads(out.read_text())["kind"] == "saf-bench-infer-peers"


@pytest.mark.parametrize("argv,needle", [(["--threads", "0"], "--threads"), (["--backends", "onnx"], "--backends")])
def test_cli_peers_bad_input(golden_demo_bundle, argv, needle, capsys):
    rc = main(["bench", "infer", str(golden_demo_bundle.path), "--peers"] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]


def test_mnist_like_files_read_back_as_mnist(tmp_path):
    """deploy/bench/mnist_like.py's IDX files load through the real MNIST reader at MNIST's shape."""
    from saf.deploy.bench.mnist_like import write_mnist_like
    from saf.train.data import load_dataset
    from saf.train.data.synthetic import load_synthetic

    write_mnist_like(tmp_path, n_train=30, n_test=12)
    ds = load_dataset("mnist", str(tmp_path))
    src = load_synthetic(seed=0, shape=(1, 28, 28), classes=10, n_train=30, n_test=12)
    assert tuple(ds.input_shape) == (1, 28, 28) and len(ds.x_test) == 12 and ds.input_scale == 255
    assert torch.equal(ds.y_test, src.y_test) and torch.allclose(ds.x_test, src.x_test.reshape(ds.x_test.shape))
