"""Event datasets and input encoders: the N-MNIST file format bit for bit, binning by time and by
count with polarity channels, the rate/latency encoders (seeded, reproducible), bad input as one line,
and both through every form: `saf train/export/verify` on an N-MNIST-layout folder written here
(0 mismatches on every backend including both Lava backends), and encoded trains on Lava and ONNX."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from saf_test_helpers.event_files import class_events, write_nmnist_folder
from saf_test_helpers.reference_lif import reference_batch

from saf.deploy.backends.emulator import run_emulator  # noqa: E402
from saf.deploy.lava.backend import run_lava  # noqa: E402
from saf.deploy.main import main  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.export.onnx_model import build_onnx_model  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.export.synthetic import random_graph  # noqa: E402
from saf.train.data import DatasetError, load_dataset  # noqa: E402
from saf.train.data.coding import InputCoding  # noqa: E402
from saf.train.data.encoders import encode  # noqa: E402
from saf.train.data.events.binning import COUNT_MAX, Events, bin_events  # noqa: E402
from saf.train.data.events.nmnist import decode_nmnist, encode_nmnist  # noqa: E402


# ---------------------------------------------------------------- N-MNIST format

def test_nmnist_bytes_follow_the_published_40_bit_layout():
    """x=5, y=33, ON, t=0x5A1B2C (23 bits) and x=0, y=1, OFF, t=7: bytes written by hand from the spec."""
    raw = bytes([5, 33, 0x80 | 0x5A, 0x1B, 0x2C, 0, 1, 0x00, 0x00, 0x07])
    ev = decode_nmnist(raw)
    assert ev.x.tolist() == [5, 0] and ev.y.tolist() == [33, 1]
    assert ev.p.tolist() == [1, 0] and ev.t.tolist() == [0x5A1B2C, 7]
    assert encode_nmnist(ev) == raw
    rng = np.random.default_rng(0)
    ev = class_events(3, rng)
    back = decode_nmnist(encode_nmnist(ev))
    for a, b in zip((ev.x, ev.y, ev.t, ev.p), (back.x, back.y, back.t, back.p)):
        np.testing.assert_array_equal(a, b)


def test_nmnist_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a whole number of 5-byte"):
        decode_nmnist(b"\x00" * 7, "f.bin")
    with pytest.raises(DatasetError, match=r"outside the 34x34 sensor"):
        decode_nmnist(bytes([40, 0, 0, 0, 0]), "f.bin")
    with pytest.raises(DatasetError, match=r"missing N-MNIST folder"):
        load_dataset("nmnist", str(tmp_path), T=4)
    with pytest.raises(DatasetError, match="T must be given"):
        load_dataset("nmnist", str(tmp_path))


def test_binning_by_time_and_by_count():
    # t = 0, 10, 20, 99 (span 100, T = 2): by time bins 0, 0, 0, 1; by count 0, 0, 1, 1
    ev = Events(x=np.array([1, 2, 3, 4]), y=np.array([0, 0, 0, 5]), t=np.array([0, 10, 20, 99]),
                p=np.array([1, 0, 1, 1]))
    ft = bin_events(ev, 2, 34, 34, "time")
    fc = bin_events(ev, 2, 34, 34, "count")
    assert ft.shape == (2, 2, 34, 34) and ft.sum() == fc.sum() == 4
    assert ft[0, 1, 0, 1] == 1 and ft[0, 0, 0, 2] == 1 and ft[0, 1, 0, 3] == 1 and ft[1, 1, 5, 4] == 1
    assert fc[1, 1, 0, 3] == 1 and fc[0, 1, 0, 3] == 0 and fc[1, 1, 5, 4] == 1
    many = Events(x=np.zeros(40, int), y=np.zeros(40, int), t=np.arange(40), p=np.ones(40, int))
    assert bin_events(many, 1, 34, 34)[0, 1, 0, 0] == COUNT_MAX     # counts clip to the input range


def test_nmnist_folder_loads_with_labels_and_frames(tmp_path):
    root = write_nmnist_folder(tmp_path / "nm", n_train=2, n_test=1, classes=(0, 7))
    ds = load_dataset("nmnist", root, T=5)
    assert ds.x_train.shape == (4, 5, 2, 34, 34) and ds.time_steps == 5 and ds.input_scale == 1.0
    assert ds.y_train.tolist() == [0, 0, 7, 7] and ds.y_test.tolist() == [0, 7]
    ev = decode_nmnist(open(os.path.join(root, "Test", "7", "00000.bin"), "rb").read())
    np.testing.assert_array_equal(ds.x_test[1].numpy(), bin_events(ev, 5, 34, 34, "time"))
    by_count = load_dataset("nmnist", root, T=5, coding=InputCoding(bin_by="count"))
    assert not np.array_equal(by_count.x_test.numpy(), ds.x_test.numpy())


# ---------------------------------------------------------------- encoders

def test_rate_encoder_is_seeded_and_keyed_by_content():
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    a = encode(x, 50, "rate", seed=1)
    assert a.shape == (5, 50, 1, 8, 8) and set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, encode(x, 50, "rate", seed=1))
    np.testing.assert_array_equal(a[3:], encode(x[3:], 50, "rate", seed=1))   # index-free
    assert not np.array_equal(a, encode(x, 50, "rate", seed=2))
    assert abs(float(a.mean(1).mean()) - float(x.mean())) < 0.03               # rate ~ intensity


def test_latency_encoder_one_spike_brightest_first():
    x = np.array([[1.0, 0.5, 0.0, 0.2]], dtype=np.float32)
    s = encode(x, 5, "latency")
    assert s[0, :, 0].tolist() == [1, 0, 0, 0, 0] and s[0, :, 1].tolist() == [0, 0, 1, 0, 0]
    assert s[0, :, 2].sum() == 0 and s[0, :, 3].tolist() == [0, 0, 0, 1, 0]


def test_encoded_dataset_and_coding_record(tmp_path):
    ds = load_dataset("digits", T=4, coding=InputCoding("latency"))
    assert ds.x_test.shape[1:] == (4, 1, 8, 8) and ds.input_scale == 1.0 and ds.name == "digits+latency"
    c = InputCoding("rate", 7, "count")
    assert InputCoding.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert InputCoding.from_config({"encoder": "rate", "encoder_seed": 7, "bin_by": "count"}) == c
    with pytest.raises(DatasetError, match="--encoder must be one of"):
        InputCoding("poisson-ish")
    with pytest.raises(DatasetError, match="needs the number of time steps"):
        load_dataset("digits", coding=InputCoding("rate"))


@pytest.mark.parametrize("kind", ["rate", "latency"])
def test_encoded_trains_through_every_form(kind):
    """Trains from each encoder, fed as 1-bit x[t], agree bit for bit in the oracle, emulator, SAF
    form, ONNX and Lava; the constant image instead of its train gives other spikes."""
    ds = load_dataset("digits", T=5, coding=InputCoding(kind, 3))
    g = random_graph("dense", T=5, lam=0.5, seed=4, input_shape=(1, 8, 8))
    l0 = g.layers[0]
    l0.threshold, l0.bias = max(1, l0.threshold // 31), l0.bias // 31
    g.input_bits, g.input_scale, g.input_time_varying = 1, 1.0, True
    x = g.quantize_input(ds.x_test[:3].numpy())
    assert x.shape == (3, 5, 1, 8, 8) and x.max() == 1
    r, s, _ = reference_batch(g, x)
    assert all(0.01 < float(a.mean()) < 0.99 for a in s)
    for res in (run_emulator(g, x), run_saf_int(g, x), run_onnx(build_onnx_model(g), g, x), run_lava(g, x)):
        np.testing.assert_array_equal(res.readout, r, err_msg=res.backend)
        assert sum(int((a != b).sum()) for a, b in zip(res.spikes, s)) == 0, res.backend
    const = (load_dataset("digits").x_test[:3].numpy() > 0.5).astype(np.int64)   # the image, every step
    assert const.any() and sum(int((a != b).sum()) for a, b in zip(run_emulator(g, const).spikes, s)) > 0


# ---------------------------------------------------------------- the CLI end to end

def test_train_export_verify_on_an_nmnist_folder(tmp_path, capsys):
    root = write_nmnist_folder(tmp_path / "nm", n_train=8, n_test=2)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--model", "nmnist-conv", "--dataset", "nmnist", "--data-root", root, "--T", "4",
                 "--epochs", "2", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.01",
                 "--bin-by", "count", "--out", str(run), "--no-progress"]) == 0
    assert main(["export", str(run), "--target", "loihi2", "--calibrate-data", "nmnist", "--data-root", root,
                 "--out", str(bundle)]) == 0
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["input_time_varying"] is True and m["meta"]["input_coding"]["bin_by"] == "count"
    assert "certificate: EXACT" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--data", "nmnist", "--data-root", root, "--lava-limit", "4",
                 "--backends", "saf-int,emulator,onnx,lava,lava-own,saf-float", "--out", str(tmp_path / "v"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "verify: PASS" in out
    for pair in ("saf-int vs emulator on 20", "saf-int vs onnx on 20", "saf-int vs lava on 4",
                 "saf-int vs lava-own on 4"):
        line = next(l for l in out.splitlines() if pair in l)
        assert line.strip().startswith("OK") and ": 0 mismatching spikes" in line
    png = tmp_path / "raster.png"
    assert main(["run", str(bundle), "--backend", "emulator", "--data", "nmnist", "--data-root", root,
                 "--limit", "3", "--raster", str(png), "--sample", "1"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_raster_shows_the_input_events_of_each_step(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    import saf.deploy.plots as plots

    g = random_graph("dense", T=4, lam=0.5, seed=1)
    x = np.zeros((2, 4, 64), dtype=np.int64)
    x[1, 0, 3] = x[1, 2, 10] = x[1, 3, 63] = 5              # three events of sample 1
    r = run_emulator(g, x)
    figs = []
    real_savefig = Figure.savefig

    def kept(fig, *args, **kwargs):                        # the figure written, kept to read its axes
        figs.append(fig)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", kept)
    plots.plot_raster(r, g, 1, tmp_path / "raster.png", xq=x)
    ax = figs[0].axes
    assert len(ax) == 1 + len(g.spiking_layers) and ax[0].get_ylabel().startswith("input")
    pts = ax[0].collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(pts).astype(int).tolist())) == [(1, 3), (3, 10), (4, 63)]
    layer0 = np.asarray(ax[1].collections[0].get_offsets()).astype(int)
    t, k = np.nonzero(r.spikes[0][1])
    assert sorted(map(tuple, layer0.tolist())) == sorted(zip((t + 1).tolist(), k.tolist()))
