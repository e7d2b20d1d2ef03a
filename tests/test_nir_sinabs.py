"""A NIR file Sinabs wrote (issue 29, item 5): tests/golden/sinabs-cnn/cnn.nir, Sinabs 3.1.3's `to_nir` of its
tutorial-shaped CNN (Conv2d -> IAFSqueeze -> SumPool2d -> Conv2d -> IAFSqueeze -> SumPool2d -> Flatten -> Linear ->
IAFSqueeze) with nir 1.0.4, and sinabs.npz, Sinabs' own spikes of every layer on saf's digits test split. Sinabs
pins nir <= 1.0.4 and saf nir 1.0.8, so the file is made in .venv-sinabs (`make sinabs-fixture`,
tests/sinabs_suite/sinabs_cnn.py) and read here with nir 1.0.8; `make test-sinabs` rebuilds it with Sinabs and checks it
is this file. The comparisons (tests/saf_test_helpers/sinabs_check.py) are exact: the weights are multiples of 2^-g and the inputs of
1/16, so every sum on both sides is exact."""
from __future__ import annotations

from pathlib import Path

from saf_test_helpers import sinabs_check as S

FIXTURE = Path(__file__).parent / "golden" / "sinabs-cnn"
NIR, NPZ = FIXTURE / "cnn.nir", FIXTURE / "sinabs.npz"


def test_sinabs_file_imports_deploys_exact_and_equals_sinabs_spikes_in_every_layer(tmp_path):
    """saf import --reset subtract --compare ge: the float form's spikes equal Sinabs' in all 3 layers at all 6
    steps on all 360 images; loihi and onnx bundles EXACT, the deployed integer network's spikes equal Sinabs' too;
    saf verify PASS over saf-int, emulator, ONNX and lava-own (10 samples) with 0 mismatching spikes."""
    r = S.check(NIR, NPZ, tmp_path)
    assert all(n > 5000 for n in r["sinabs_spikes"]), r             # every layer fires, the output layer too
    assert r["float_mismatches"] == [0, 0, 0], r
    assert r["deployed_mismatches"] == [0, 0, 0], r
    assert r["verify_zero_lines"] == 6, r                           # 3 layers x 2 compared pairs
    assert S.passed(r), r


def test_sinabs_neuron_read_as_zero_reset_or_strict_threshold_fails_the_comparison(tmp_path):
    """The comparison can fail: NIR's defaults (reset to 0) or NIR's strict `v > v_threshold` are not Sinabs'
    IAF (MembraneSubtract, SingleSpike fires at v >= threshold); each differs from Sinabs' spikes."""
    x, _, ref = S.sinabs_spikes(NPZ)
    counts = {}
    for name, flags in (("zero", ["--reset", "zero", "--compare", "ge"]), ("gt", ["--reset", "subtract", "--compare", "gt"]),
                        ("sinabs", S.SINABS_FLAGS)):
        rc, _ = S._saf(["import", NIR, "--out", tmp_path / name, *flags])
        assert rc == 0
        counts[name] = S.mismatches(ref, S.float_spikes(tmp_path / name, x))
    assert counts["sinabs"] == [0, 0, 0], counts
    assert sum(counts["zero"]) > 1000 and sum(counts["gt"]) > 100, counts


def test_a_layer_missing_from_the_comparison_is_a_failure():
    """mismatches() never zips over fewer layers: a missing layer or another shape counts as a failure."""
    import numpy as np

    _, _, ref = S.sinabs_spikes(NPZ)
    assert S.mismatches(ref, [r.astype(bool) for r in ref]) == [0, 0, 0]
    assert S.mismatches(ref, [r.astype(bool) for r in ref[:2]]) == [-1]
    assert S.mismatches(ref, [r.astype(bool) for r in ref[:2]] + [np.zeros((1, 6, 10), bool)])[-1] == -1
