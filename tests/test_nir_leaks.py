"""The usual snnTorch leaks (beta 0.9, 0.95): a non-dyadic leak deploys as Loihi's truncating 12-bit decay,
so the bundle is NOT EXACT. `saf export` then measures, per layer, how far the deployed integer LIF form
drifts from the float model on the calibration samples (export/pipeline/drift.py), keeps the table in the
manifest, `saf verify` prints it, and both say what would make the network exact."""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from saf_test_helpers import nir_nets as N
from saf.deploy.main import main


def _export(tmp, net, capsys) -> tuple:
    """NIR (snnTorch's exporter) -> saf import -> saf export --target loihi: (bundle path, export stdout)."""
    N.export_snntorch(net, tmp / "n.nir")
    assert main(["import", str(tmp / "n.nir"), "--out", str(tmp / "run"), "--reset", "subtract-undecayed"]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp / "run"), "--target", "loihi", "--calibrate-data", "digits",
                 "--out", str(tmp / "b")]) == 0
    return tmp / "b", capsys.readouterr().out


@pytest.fixture(scope="module")
def leaky09(tmp_path_factory):
    """The conv net of tests/saf_test_helpers/nir_nets.py at beta 0.9, trained briefly, exported through NIR (capsys is
    function-scoped: the module fixture captures stdout itself)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("leak09")
    net = N.train_snntorch(N.snntorch_net("subtract", beta=0.9), N.digits(), epochs=2)
    N.export_snntorch(net, tmp / "n.nir")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["import", str(tmp / "n.nir"), "--out", str(tmp / "run"), "--reset", "subtract-undecayed"]) == 0
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["export", str(tmp / "run"), "--target", "loihi", "--calibrate-data", "digits",
                     "--out", str(tmp / "b")]) == 0
    return tmp / "b", buf.getvalue()


def test_export_prints_each_layers_drift_and_keeps_it_in_the_manifest(leaky09):
    from saf.export.bundle.store import read_manifest

    bundle, out = leaky09
    m = read_manifest(bundle)
    assert not m["certificate"]["exact"]
    d = m["drift"]
    assert [l["layer"] for l in d["layers"]] == [l["name"] for l in m["layers"] if l["kind"] != "readout"]
    assert d["samples"] == 512 and "calibration samples" in d["inputs"]
    for l in d["layers"]:             # sane: most cells agree, some do not (a truncating leak), both forms fire
        assert 0.8 < l["agreement"] < 1.0, l
        assert l["total"] == 512 * 6 * int(np.prod(next(x["out_shape"] for x in m["layers"] if x["name"] == l["layer"])))
        assert l["spikes_deployed"] > 0 and l["spikes_float"] > 0
    assert 0.8 <= d["prediction_agreement"] <= 1.0
    assert "drift of the deployed integer LIF form from the float model" in out
    for l in d["layers"]:             # the printed row is the manifest's
        assert re.search(rf"{l['layer']}\s+{100 * l['agreement']:.4f}%\s+{l['spikes_deployed']:,}\s+{l['spikes_float']:,}", out)
    assert f"same prediction {d['prediction_agreement']:.2%}" in out
    # the calibration accuracy of a NOT EXACT bundle is the deployed form's, said so
    assert m["calibration"]["quantized_form"] == "integer LIF (emulator)"
    assert "(integer LIF (emulator), deployed)" in out


def test_the_advice_names_the_nearest_dyadic_leaks_and_grid_training(leaky09):
    from saf.export.bundle.store import read_manifest

    bundle, out = leaky09
    adv = read_manifest(bundle)["exact_advice"]
    assert "a dyadic leak" in adv and "0.5 (2^-1) or 1 (no leak, IF)" in adv and "deployment grid" in adv and "saf finetune RUN --deploy-target loihi" in adv
    assert f"what would make it exact: {adv}" in out


def test_verify_prints_the_export_drift_table(leaky09, capsys):
    from saf.export.bundle.store import read_manifest

    bundle, _ = leaky09
    d = read_manifest(bundle)["drift"]
    main(["verify", str(bundle), "--backends", "emulator,onnx", "--limit", "40", "--out", str(bundle.parent / "v")])
    out = capsys.readouterr().out
    assert "measured by saf export (the bundle's manifest): drift of the deployed integer LIF form" in out
    for l in d["layers"]:
        assert re.search(rf"{l['layer']}\s+{100 * l['agreement']:.4f}%", out)
    assert "what would make it exact: a dyadic leak" in out


def _emulator(graph, xq):
    from saf.deploy.backends.emulator import emulate
    return emulate(graph, xq, record_spikes=True)


def test_the_table_detects_a_drift_of_the_integer_decay(leaky09):
    """A deployed form whose decay is off by a few steps of 1/4096 (a fault) drifts further from the float
    model than the bundle's own: the table measures the integer form it is given."""
    from saf.export.bundle.store import load_graph
    from saf.export.pipeline.drift import drift_table
    from saf.train.checkpoint import load_model

    bundle, _ = leaky09
    g = load_graph(bundle)
    net = load_model(bundle.parent / "run" / "model.safetensors")[0].double()
    x = N.digits().x_train[:200].numpy()
    good = drift_table(net, g, x, _emulator, "t")
    bad_g = copy.copy(g)
    bad_g.decay = int(g.decay) + 200                   # lam_q 0.9 -> 0.85
    bad = drift_table(net, g, x, lambda _, xq: _emulator(bad_g, xq), "t")
    assert [l["agreement"] for l in bad["layers"]][0] < [l["agreement"] for l in good["layers"]][0] - 0.01
    assert all(b["agreement"] < a["agreement"] for a, b in zip(good["layers"], bad["layers"]))


def test_a_dyadic_leak_is_exact_with_no_drift_table_nor_advice(tmp_path, capsys):
    """beta 0.5: EXACT, so export measures no drift and gives no advice (the table is for NOT EXACT bundles)."""
    from saf.export.bundle.store import read_manifest

    net = N.train_snntorch(N.snntorch_net("subtract", beta=0.5), N.digits(), epochs=1)
    bundle, out = _export(tmp_path, net, capsys)
    m = read_manifest(bundle)
    assert m["certificate"]["exact"] and "drift" not in m and "exact_advice" not in m
    assert "drift of the deployed" not in out and "what would make it exact" not in out


def test_dyadic_leaks_are_the_nearest_exact_ones_the_state_holds():
    from saf.export.pipeline.drift import dyadic_leaks, exact_advice

    assert dyadic_leaks(0.9, 6) == (0.5, 1.0)
    assert dyadic_leaks(0.95, 10) == (0.5, 1.0)
    assert dyadic_leaks(0.3, 6) == (0.25, 0.5)            # F = 2 * 5 = 10 fits the 24-bit state
    assert dyadic_leaks(0.2, 10) == (None, 0.25)          # 0.125 needs F = 27 at T = 10: not held
    assert "nearest to 0.95: 0.5 (2^-1) or 1 (no leak, IF) at T = 10" in exact_advice(0.95, 10)
