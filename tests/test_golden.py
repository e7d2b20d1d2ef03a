"""Golden files pin every spike and every input (issue 22, item 9): two neurons swapping their spikes
is drift (per-step counts were not), a subset run (Lava: the first --lava-limit samples) has its inputs
checked too (old code checked the input hash only when the sample counts matched), and a version-1
file is refused with the command that regenerates it."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from saf.deploy.backends.registry import Bundle, run_backend
from saf.deploy.main import main
from saf.deploy.verify import verify
from saf.deploy.verify.golden import GoldenError, compare_golden, golden_record, read_golden, write_golden
from saf.export.bundle.store import write_bundle
from saf.export.onnx_model import save_onnx_model
from saf.export.synthetic import random_graph, random_inputs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    g = random_graph("dense", T=5, lam=0.5, seed=4)
    out = write_bundle(g, tmp_path_factory.mktemp("g") / "b", writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    b = Bundle.load(out)
    xq = random_inputs(g, 12, seed=3)
    return b, xq, run_backend("emulator", b, xq)


def _swap_two_neurons(r):
    """A copy of r where, at one sample and step of the first layer, a firing and a silent neuron swap:
    every per-step spike count stays the same."""
    r2 = copy.deepcopy(r)
    s = r2.spikes[0]
    for i, t in np.ndindex(s.shape[:2]):
        on, off = np.flatnonzero(s[i, t]), np.flatnonzero(~s[i, t])
        if len(on) and len(off):
            s[i, t, on[0]], s[i, t, off[0]] = False, True
            return r2, i
    raise AssertionError("no step with both a firing and a silent neuron")


def test_two_neurons_swapping_spikes_is_drift(run, tmp_path):
    b, xq, r = run
    write_golden(tmp_path, golden_record(r, "random", xq))
    gold = read_golden(tmp_path)
    assert compare_golden(gold, r, xq)["ok"]
    r2, i = _swap_two_neurons(r)
    assert all(np.array_equal(a.sum(axis=2), c.sum(axis=2)) for a, c in zip(r.spikes, r2.spikes))
    d = compare_golden(gold, r2, xq)
    assert not d["ok"] and d["spike_drift"] == 1 and d["first_sample"] == i and d["readout_drift"] == 0


def test_subset_run_inputs_are_checked(run, tmp_path):
    """A backend that ran the first 5 samples: on other inputs it is drift, on the golden ones it is not."""
    b, xq, r = run
    write_golden(tmp_path, golden_record(r, "random", xq))
    gold = read_golden(tmp_path)
    sub = run_backend("emulator", b, xq[:5])
    assert compare_golden(gold, sub, xq)["ok"]
    other = xq.copy()
    other[3] = other[2]
    d = compare_golden(gold, run_backend("emulator", b, other[:5]), other)
    assert not d["ok"] and "1 of the 5 inputs differ" in d["reason"] and d["first_sample"] == 3


def test_verify_checks_a_subset_backend_against_golden(run, tmp_path):
    """Through verify: a subset backend (lava-like: runs the first lava_limit samples) sees every input."""
    import dataclasses
    from saf.deploy.backends.registry import BACKENDS
    b, xq, _ = run
    sub = dataclasses.replace(BACKENDS["onnx"], name="onnx-subset", subset=True)
    rep = verify(b, xq, None, [BACKENDS["emulator"], sub], lava_limit=4, golden_dir=tmp_path, update_golden=True)
    assert rep.ok and [d["samples"] for d in rep.golden] == [12, 4]
    moved = xq.copy()
    moved[[1, 2]] = moved[[2, 1]]
    rep = verify(b, moved, None, [BACKENDS["emulator"], sub], lava_limit=4, golden_dir=tmp_path)
    assert not rep.ok and all("inputs differ" in d["reason"] for d in rep.golden)


def test_version_1_golden_is_refused_with_the_fix(run, tmp_path, capsys):
    b, xq, r = run
    (tmp_path / "golden.json").write_text(json.dumps({"version": 1, "n": 1, "readout": [[0]],
                                                      "spike_count_hashes": ["x"], "inputs_sha256": "y"}))
    with pytest.raises(GoldenError, match="version 1 pins spike counts only.*--update-golden"):
        read_golden(tmp_path)
    np.save(tmp_path / "x.npy", xq)
    rc = main(["verify", str(b.path), "--backends", "saf-int,emulator", "--inputs", str(tmp_path / "x.npy"),
               "--golden", str(tmp_path), "--out", str(tmp_path / "v"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "regenerate it with --update-golden" in err and err.count("\n") == 1, err
    assert not (tmp_path / "v").exists()


def test_truncated_golden_is_refused(run, tmp_path):
    b, xq, r = run
    rec = golden_record(r, "random", xq)
    rec["spike_hashes"] = rec["spike_hashes"][:-1]
    (tmp_path / "golden.json").write_text(json.dumps(rec))
    with pytest.raises(GoldenError, match="must hold n = 12 samples"):
        read_golden(tmp_path)
