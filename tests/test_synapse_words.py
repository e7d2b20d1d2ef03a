"""Two synapse words per weight (hw_targets/words.py, `saf export --synapse-words 2`): the split, the quantizer's
grid, the hardware rules and memory cost, the manifest, and every backend on a random two-word graph (weights
up to 1,000, beyond one word's 254) against the literal spec oracle, with faults that drop a word."""
from __future__ import annotations

import json

import numpy as np
import pytest

from saf_test_helpers.reference_lif import reference_batch

from saf.deploy.backends.registry import Bundle, run_backend  # noqa: E402
from saf.deploy.main import main  # noqa: E402
from saf.deploy.verify import verify  # noqa: E402
from saf.export.bundle.error import BundleError  # noqa: E402
from saf.export.bundle.store import load_graph, write_bundle  # noqa: E402
from saf.export.quantize import QuantizeError, weight_grid  # noqa: E402
from saf.export.resources import describe  # noqa: E402
from saf.export.synthetic import random_graph, random_inputs  # noqa: E402
from saf.hw_targets import LOIHI1, LOIHI2, ONNX, LayerDesc, NetDesc, check, map_network  # noqa: E402
from saf.hw_targets.words import WORD_MAX, WORD_SHIFT, split_words, words_max  # noqa: E402


# ---------------------------------------------------------------- the split and the grid

def test_every_even_weight_splits_into_two_even_words_that_add_back():
    w = np.arange(-words_max(2), words_max(2) + 1, 2)
    hi, lo = split_words(w)
    assert words_max(2) == 32766 and words_max(1) == 254
    np.testing.assert_array_equal((hi << WORD_SHIFT) + lo, w)
    for word in (hi, lo):
        assert int(np.abs(word).max()) == WORD_MAX and not (word % 2).any()
    for bad in (3, words_max(2) + 2):                       # odd, or beyond two words
        with pytest.raises(ValueError, match=str(bad)):
            split_words(np.array([bad]))


def test_weight_grid_two_words_only_where_the_target_holds_them():
    assert weight_grid(LOIHI2) == (254, 2) and weight_grid(LOIHI2, 2) == (32766, 2)
    for t in (LOIHI1, ONNX):
        with pytest.raises(QuantizeError, match="1 synapse word"):
            weight_grid(t, 2)


# ---------------------------------------------------------------- rules and memory

def _net(words: int, wmax: int, odd: bool = False) -> NetDesc:
    fc = LayerDesc(name="fc", kind="dense", in_shape=(64,), out_shape=(32,), n_neurons=32, fan_in=64,
                   n_weights=2048, n_synapses=2048, max_abs_weight=wmax, threshold=100, odd_weights=odd,
                   weight_words=words)
    ro = LayerDesc(name="readout", kind="readout", in_shape=(32,), out_shape=(10,), n_neurons=10, fan_in=32,
                   n_weights=320, n_synapses=320, max_abs_weight=100)
    return NetDesc(layers=[fc, ro], T=4, lam=0.5, decay=2048)


def _rules(net, target) -> set:
    return {v.rule for v in check(net, target) if v.layer == "fc"}


def test_rules_accept_two_word_weights_on_loihi2_only():
    assert not _rules(_net(2, 32766), LOIHI2) & {"weight_magnitude", "weight_precision"}
    assert "weight_magnitude" in _rules(_net(2, 32768), LOIHI2)        # beyond two words
    assert "weight_precision" in _rules(_net(2, 3000, odd=True), LOIHI2)   # the low word is even
    assert "weight_magnitude" in _rules(_net(2, 200), LOIHI1)          # Loihi 1: one word
    assert "weight_magnitude" in _rules(_net(1, 300), LOIHI2)          # one word still ends at 255


def test_second_word_doubles_the_synaptic_memory():
    one, two = (map_network(_net(w, 200), LOIHI2).layers[0] for w in (1, 2))
    state = 32 * LOIHI2.neuron_state_bytes
    assert one.memory_bytes_per_core > state
    assert two.memory_bytes_per_core - state == 2 * (one.memory_bytes_per_core - state)
    assert two.input_axons_per_core == 2 * one.input_axons_per_core


# ---------------------------------------------------------------- manifest

def _bundle(tmp_path, g, name="syn") -> Bundle:
    from saf.export.onnx_model import save_onnx_model

    out = write_bundle(g, tmp_path / name, extra={"certificate": {"exact": None}},
                       writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    return Bundle.load(out)


def test_manifest_carries_weight_words_only_when_two(tmp_path):
    one = _bundle(tmp_path, random_graph("dense", seed=1), "one")
    assert all("weight_words" not in l for l in json.loads((one.path / "manifest.json").read_text())["layers"])
    two = _bundle(tmp_path, random_graph("dense", seed=1, weight_words=2), "two")
    m = json.loads((two.path / "manifest.json").read_text())
    assert [l["weight_words"] for l in m["layers"]] == [2, 2, 2]
    assert [l.weight_words for l in load_graph(two.path).layers] == [2, 2, 2]
    m["layers"][1]["weight_words"] = 3
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"weight_words'.*must be one of \(1, 2\)"):
        load_graph(bad)


# ---------------------------------------------------------------- backends on a two-word graph

@pytest.mark.parametrize("arch,feedback", [("dense", True), ("conv", False)])
def test_two_word_graph_runs_equal_in_every_backend(arch, feedback, tmp_path):
    g = random_graph(arch, seed=3, feedback=feedback, weight_words=2)
    assert max(int(np.abs(l.weight).max()) for l in g.layers) > 3 * WORD_MAX     # the high word matters
    x = random_inputs(g, 3, seed=1)
    r, s, _ = reference_batch(g, x)
    assert all(0.05 < float(np.mean(a)) < 0.95 for a in s)                     # every layer fires, not always
    b = _bundle(tmp_path, g)
    names = ["saf-int", "emulator", "onnx", "lava-own"] + (["lava"] if arch == "dense" and not feedback else [])
    for name in names:
        res = run_backend(name, b, x, record_spikes=True)
        np.testing.assert_array_equal(res.readout, r, err_msg=name)
        assert all(np.array_equal(u, v) for u, v in zip(res.spikes, s)), name
    rep = verify(b, x, None, names, lava_limit=3)
    assert rep.ok and all(p["spike_mismatches"] == 0 for p in rep.pairs)


def test_stock_lava_runs_dense_words_and_refuses_conv_words(tmp_path):
    from saf.deploy.lava.stock import stock_refusal

    g = random_graph("dense", seed=3, weight_words=2)
    x = random_inputs(g, 2, seed=1)
    res = run_backend("lava", _bundle(tmp_path, g), x, record_spikes=True)
    r, s, _ = reference_batch(g, x)
    np.testing.assert_array_equal(res.readout, r)
    assert all(np.array_equal(u, v) for u, v in zip(res.spikes, s))
    why = stock_refusal(random_graph("conv", seed=3, weight_words=2))
    assert why.startswith("layer conv0: 2 synapse words per weight on a conv layer") and "\n" not in why


@pytest.mark.parametrize("fault", ["low-word", "high-word"])
def test_a_dropped_word_is_caught_by_verify(fault, tmp_path):
    from saf.deploy.backends.spec import BackendError

    g = random_graph("dense", seed=3, feedback=True, weight_words=2)
    b = _bundle(tmp_path, g)
    x = random_inputs(g, 16, seed=1)
    rep = verify(b, x, None, ["saf-int", "emulator"], fault=fault)
    bad = [p for p in rep.pairs if not p["ok"]]
    assert not rep.ok and bad and {p["b"] for p in bad} == {f"emulator[{fault}]"}
    one = _bundle(tmp_path, random_graph("dense", seed=3), "one")     # nothing to drop: refused, not vacuous
    with pytest.raises(BackendError, match="needs a bundle with two synapse words"):
        verify(one, x, None, ["saf-int", "emulator"], fault=fault)


def test_lava_own_computes_through_its_two_words(monkeypatch):
    """lava-own runs each word as its own synapse: a split that loses the low word changes its spikes."""
    import saf.deploy.lava.graph as lg
    from saf.deploy.lava.backend import run_lava

    g = random_graph("dense", seed=3, weight_words=2)
    x = random_inputs(g, 2, seed=1)
    r, s, _ = reference_batch(g, x)
    monkeypatch.setattr(lg, "split_words", lambda w: (split_words(w)[0], np.zeros_like(w)))
    bad = run_lava(g, x)
    assert sum(int((u != v).sum()) for u, v in zip(bad.spikes, s)) > 0


# ---------------------------------------------------------------- the export flag

@pytest.mark.parametrize("argv,msg", [(["--target", "onnx", "--synapse-words", "2"], "--synapse-words 2: target onnx"),
                                      (["--target", "loihi1", "--synapse-words", "2"], "--synapse-words 2: target loihi1"),
                                      (["--target", "loihi2", "--synapse-words", "3"], "--synapse-words")])
def test_export_refuses_two_words_off_loihi2_in_one_line(argv, msg, tmp_path, capsys):
    assert main(["export", "--random-model", "vgg11-small-cifar", "--input-scale", "16", "--out",
                 str(tmp_path / "b"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and not (tmp_path / "b").exists()
