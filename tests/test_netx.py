"""lava-dl netx files in and out (issue 32, docs/netx.md). Networks are trained here with slayer and written
with slayer's own export_hdf5, or are the .net files the lava-dl 0.6.0 wheel ships; the `netx` backend is
lava-dl's own loader (netx.hdf5.Network) run in Lava's Loihi2SimCfg fixed_pt. Few samples, few steps: Lava
is slow."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import lava.lib.dl.slayer as slayer                       # noqa: E402 (lava-dl: Makefile installs it --no-deps)
import lava.lib.dl.netx                                   # noqa: E402,F401
from sklearn.datasets import load_digits

from saf.deploy.backends.emulator import emulate
from saf.deploy.backends.registry import Bundle, run_backend
from saf.deploy.main import main
from saf.export.netx.weights import lava_weights

SHIPPED = Path(lava.lib.dl.netx.__file__).parents[4] / "tests" / "lava" / "lib" / "dl" / "netx"
T = 6
N = 4                                  # samples through Lava per verify
NEURON = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.5, "tau_grad": 1.0, "scale_grad": 1.0,
          "requires_grad": False}


class _Slayer(torch.nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x

    def export_hdf5(self, path):
        with h5py.File(path, "w") as h:
            g = h.create_group("layer")
            for i, b in enumerate(self.blocks):
                b.export_hdf5(g.create_group(f"{i}"))


def _digits(conv: bool):
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    return (x.reshape(-1, 1, 8, 8) if conv else x), torch.tensor(d.target)


def _train(conv: bool, path: Path, epochs: int = 8) -> float:
    """A slayer CUBA net trained a few epochs on digits (constant input for T steps), written by export_hdf5."""
    torch.manual_seed(0)
    if conv:
        blocks = [slayer.block.cuba.Input(NEURON, weight=1.0, bias=0.0),
                  slayer.block.cuba.Conv(NEURON, 1, 4, 3, padding=1), slayer.block.cuba.Flatten(),
                  slayer.block.cuba.Dense(NEURON, 256, 10)]
    else:
        blocks = [slayer.block.cuba.Input(NEURON, weight=1.0, bias=0.0), slayer.block.cuba.Dense(NEURON, 64, 32),
                  slayer.block.cuba.Dense(NEURON, 32, 10)]
    net = _Slayer(blocks)
    x, y = _digits(conv)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    with torch.random.fork_rng():
        for _ in range(epochs):
            for i in range(0, 1400, 100):
                xi = x[i:i + 100].unsqueeze(-1).repeat(*([1] * x.dim()), T)
                loss = torch.nn.functional.cross_entropy(net(xi).sum(-1), y[i:i + 100])
                opt.zero_grad()
                loss.backward()
                opt.step()
    with torch.no_grad():
        acc = float((net(x[1400:].unsqueeze(-1).repeat(*([1] * x.dim()), T)).sum(-1).argmax(1) == y[1400:]).float().mean())
    net.export_hdf5(path)
    return acc


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("slayer")
    acc = {k: _train(k == "conv", d / f"{k}.net") for k in ("dense", "conv")}
    return d, acc


def _bundle(src: Path, tmp: Path, *flags) -> Path:
    run, bundle = tmp / f"{src.stem}-run", tmp / f"{src.stem}-bundle"
    assert main(["import", str(src), "--out", str(run), "--T", str(T), *flags]) == 0
    assert main(["export", str(run), "--target", "loihi", "--out", str(bundle)]) == 0
    return bundle


def _inputs(bundle: Path, conv: bool = False) -> np.ndarray:
    g = Bundle.load(bundle).graph
    if tuple(g.input_shape) in ((64,), (1, 8, 8)):
        x = _digits(conv)[0][1400:1400 + N].numpy().reshape(N, *g.input_shape)
        return g.quantize_input(x)
    rng = np.random.default_rng(0)
    return rng.integers(0, (1 << g.input_bits), size=(N, *g.input_shape))


def _verify(bundle: Path, xq, backends: str, tmp: Path, *flags) -> tuple:
    """saf verify on x_q (a .npy it writes) or, with xq None, on N samples of the dataset the run names."""
    x, out = tmp / f"{bundle.name}-x.npy", tmp / f"{bundle.name}-verify"
    if xq is None:
        given = ["--limit", str(N)]
    else:
        np.save(x, xq)
        given = ["--inputs", str(x)]
    rc = main(["verify", str(bundle), *given, "--backends", backends, "--lava-limit", str(N),
               "--no-progress", "--out", str(out), *flags])
    return rc, json.loads((out / "verify.json").read_text())


def _all_exact(r: dict, n_layers: int) -> None:
    assert r["ok"] and r["pairs"]
    for p in r["pairs"]:
        assert p["samples"] == N and len(p["layers"]) == n_layers, p
        assert p["spike_mismatches"] == 0 and p["readout_mismatches"] == 0, p
        assert p["spikes_total"] == sum(layer["total"] for layer in p["layers"]) > 0


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_slayer_trained_net_imports_exports_and_verifies_against_netx_at_0_mismatches(kind, nets, tmp_path):
    d, acc = nets
    assert acc[kind] > 0.5, acc                               # it learned something in a few epochs
    # the dense net reads digits' 64 pixels flat: --dataset digits gives it the images (verify's default inputs)
    bundle = _bundle(d / f"{kind}.net", tmp_path, *(["--dataset", "digits"] if kind == "dense" else []))
    xq = None if kind == "dense" else _inputs(bundle, True)
    g = Bundle.load(bundle).graph
    if kind == "dense":
        assert tuple(g.input_shape) == (1, 8, 8)
    rc, r = _verify(bundle, xq, "saf-int,emulator,onnx,lava,netx", tmp_path)
    assert rc == 0
    _all_exact(r, len(g.spiking_layers))
    assert {"netx", "lava", "saf-int", "onnx", "emulator"} == {b for p in r["pairs"] for b in (p["a"], p["b"])}
    assert sum(p["spikes_total"] for p in r["pairs"] if "netx" in (p["a"], p["b"])) > 0


@pytest.mark.parametrize("name", ["mnist.net", "tiny.net"])
def test_shipped_netx_files_verify_at_0_mismatches(name, tmp_path):
    bundle = _bundle(SHIPPED / name, tmp_path)
    g = Bundle.load(bundle).graph
    rc, r = _verify(bundle, _inputs(bundle), "saf-int,emulator,onnx,netx", tmp_path)
    assert rc == 0
    _all_exact(r, len(g.spiking_layers))


def test_netx_catches_wrong_conversions_and_an_injected_fault(nets, tmp_path):
    """The netx backend's spikes come from lava-dl's loader on the file, not from saf's IR: an IR built with
    conv kernels transposed (lava-dl#260's kind of error, the slayer conv net) or with netx's weight exponent
    ignored (the shipped mnist.net, whose dense weights get weight_exp -2) differs from it, and verify fails
    on the emulator with one weight changed by one LSB."""
    d, _ = nets
    bundle = _bundle(d / "conv.net", tmp_path)
    b = Bundle.load(bundle)
    xq = _inputs(bundle, True)
    ref = run_backend("netx", b, xq)
    assert all(np.array_equal(a, e) for a, e in zip(ref.spikes, emulate(b.graph, xq).spikes))
    wrong = copy.deepcopy(b.graph)
    wrong.layers[1].weight = np.ascontiguousarray(wrong.layers[1].weight.transpose(0, 1, 3, 2))
    assert sum(int((a != e).sum()) for a, e in zip(ref.spikes, emulate(wrong, xq).spikes)) > 0
    dense = _bundle(SHIPPED / "mnist.net", tmp_path)            # its dense weights carry an exponent
    bd = Bundle.load(dense)
    xd = _inputs(dense)
    ref_d = run_backend("netx", bd, xd)
    with h5py.File(SHIPPED / "mnist.net", "r") as f:
        w = np.trunc(f["layer/1/weight"][()]).astype(np.int64)
    held, bits = lava_weights(w)
    assert bits > 0 and np.array_equal(held >> bits, bd.graph.layers[1].weight)
    unscaled = copy.deepcopy(bd.graph)
    unscaled.layers[1].weight = held                        # the matrix Lava holds, its weight_exp ignored
    assert sum(int((a != e).sum()) for a, e in zip(ref_d.spikes, emulate(unscaled, xd).spikes)) > 0
    rc, r = _verify(bundle, xq, "emulator,netx", tmp_path, "--inject-fault", "lsb")
    assert rc != 0 and not r["ok"]


def test_slayer_recurrent_cuba_net_dense_rec_with_current_decay_verifies_against_netx(tmp_path):
    """slayer's Recurrent block (netx's dense_rec: a feedback edge onto the layer) with a decaying current
    (iDecay 2048: two-state layers), weights drawn so that every layer fires: 0 mismatches against netx."""
    torch.manual_seed(1)
    p = dict(NEURON, current_decay=0.5)
    blocks = [slayer.block.cuba.Input(p, weight=1.0, bias=0.0), slayer.block.cuba.Recurrent(p, 64, 16),
              slayer.block.cuba.Dense(p, 16, 10)]
    net = _Slayer(blocks)
    with torch.no_grad():
        for b in blocks[1:]:
            for name, prm in b.named_parameters():
                if "weight" in name:
                    prm.uniform_(-1.5, 2.0)
        net(torch.rand(2, 64, T))
    net.export_hdf5(tmp_path / "rec.net")
    bundle = _bundle(tmp_path / "rec.net", tmp_path)
    g = Bundle.load(bundle).graph
    assert [(f.src, f.dst) for f in g.feedback] == [(1, 1)] and all(l.du == 2047 for l in g.spiking_layers)
    xq = _inputs(bundle)
    assert all(int(s.sum()) > 0 for s in emulate(g, xq).spikes)        # the recurrent layer fires too
    rc, r = _verify(bundle, xq, "emulator,onnx,netx", tmp_path)
    assert rc == 0
    _all_exact(r, len(g.spiking_layers))


def _retype(path: Path, layer: int, kind: str) -> None:
    with h5py.File(path, "r+") as f:
        del f[f"layer/{layer}/type"]
        f[f"layer/{layer}/type"] = np.array([kind.encode()], dtype="S10")


def _set(path: Path, key: str, value) -> None:
    with h5py.File(path, "r+") as f:
        if key in f:
            del f[key]
        f[key] = value


def _pool(path: Path) -> None:
    """A slayer net with its own Pool block (netx raises NotImplementedError on it)."""
    blocks = [slayer.block.cuba.Input(NEURON), slayer.block.cuba.Pool(NEURON, 2), slayer.block.cuba.Flatten(),
              slayer.block.cuba.Dense(NEURON, 16, 10)]
    with torch.no_grad():
        _Slayer(blocks)(torch.rand(2, 1, 8, 8, 3))
    _Slayer(blocks).export_hdf5(path)


def _sdnn(path: Path) -> None:
    net = _Slayer([slayer.block.sigma_delta.Input({"threshold": 0.1, "activation": torch.relu}),
                   slayer.block.sigma_delta.Dense({"threshold": 0.1, "activation": torch.relu}, 64, 10)])
    net(torch.rand(2, 64, 3))
    net.export_hdf5(path)


REFUSALS = {
    "pool layer": (_pool, ["layer 1 (pool)", "pooling"]),
    "average layer": (lambda p: _retype(p, 2, "average"), ["layer 2 (average)", "NotImplementedError"]),
    "SDNN neuron": (_sdnn, ["layer 0 (input)", "SDNN"]),
    "truncated file": (lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]), ["not a readable"]),
    "NaN weights": (lambda p: _set(p, "layer/2/weight", np.full((10, 32), np.nan, np.float32)), ["layer 2 (dense)", "NaN"]),
    "nonzero delay": (lambda p: _set(p, "layer/1/delay", np.arange(32, dtype=np.float32)), ["layer 1 (dense)", "delays"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_unsupported_netx_file_exits_2_in_one_line_and_writes_nothing(case, nets, tmp_path, capsys):
    d, _ = nets
    src = tmp_path / "model.net"
    src.write_bytes((d / "dense.net").read_bytes())
    make, words = REFUSALS[case]
    make(src)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("saf import: error: ") and str(src) in err, err
    for w in words:
        assert w in err, (w, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("name,words", [("gts/ntidigits/ntidigits.net", ["layer 2 (dense)", "delays"]),
                                        ("gts/pilotnet_sdnn/network.net", ["layer 0 (input)", "SDNN"]),
                                        ("gts/pilotnet_lif/network.net", ["layer 4 (conv)", "stride"])])
def test_shipped_files_netx_cannot_map_are_refused_naming_the_layer(name, words, tmp_path, capsys):
    assert main(["import", str(SHIPPED / name), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(w in err for w in words), err
    assert not (tmp_path / "run").exists()


def test_zero_reset_bptt_run_exports_as_netx_and_lava_dl_runs_it_as_the_emulator(tmp_path, capsys):
    """saf export --target netx of a BPTT run with reset zero and compare >: lava-dl's loader loads the file
    and its Lava spikes equal the emulator's on the test set's first samples; the default subtractive reset
    is refused in one line naming the rule."""
    from saf.deploy.lava.netx_run import run_netx_file
    from saf.export.netx.write import netx_meta
    from saf.train.data import load_dataset

    spec = {"name": "mlp-zero", "input_shape": [1, 8, 8], "num_classes": 10,
            "layers": [{"type": "flatten"}, {"type": "linear", "out": 32, "reset": "zero", "compare": ">"}]}
    (tmp_path / "m.json").write_text(json.dumps(spec))
    run = tmp_path / "run"
    assert main(["train", "--model", str(tmp_path / "m.json"), "--method", "bptt", "--lam", "0.5", "--T", str(T),
                 "--epochs", "2", "--no-progress", "--out", str(run)]) == 0
    assert main(["export", str(run), "--target", "netx", "--out", str(tmp_path / "m.net")]) == 0
    assert main(["export", str(run), "--target", "loihi", "--out", str(tmp_path / "b")]) == 0
    g = Bundle.load(tmp_path / "b").graph
    g.meta["netx"] = netx_meta(g)
    xq = g.quantize_input(load_dataset("digits", T=T).x_test[:N].numpy())
    ours, theirs = emulate(g, xq), run_netx_file(tmp_path / "m.net", g, xq)
    assert len(theirs.spikes) == len(ours.spikes) and sum(int(s.sum()) for s in ours.spikes) > 0
    assert all(np.array_equal(a, b) for a, b in zip(ours.spikes, theirs.spikes))
    assert np.array_equal(ours.readout, theirs.readout)
    # the written file imported again: the same integers, and verify against lava-dl's network passes
    back = _bundle(tmp_path / "m.net", tmp_path)
    gb = Bundle.load(back).graph
    assert [l.weight.tolist() for l in gb.layers] == [l.weight.tolist() for l in g.layers]
    assert (gb.input_scale, gb.input_bits) == (g.input_scale, g.input_bits)
    rc, r = _verify(back, xq, "saf-int,emulator,netx", tmp_path)
    assert rc == 0
    _all_exact(r, len(g.spiking_layers))
    capsys.readouterr()
    spec["layers"][1] = {"type": "linear", "out": 32}
    (tmp_path / "m.json").write_text(json.dumps(spec))
    assert main(["train", "--model", str(tmp_path / "m.json"), "--method", "bptt", "--lam", "0.5", "--T", str(T),
                 "--epochs", "1", "--no-progress", "--out", str(tmp_path / "run2")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run2"), "--target", "netx", "--out", str(tmp_path / "m2.net")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "reset 'subtract'" in err and "reset: zero" in err, err
    assert not (tmp_path / "m2.net").exists()
