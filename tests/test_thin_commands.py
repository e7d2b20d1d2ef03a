"""Commands do library work once (issue 30, item 3): verify's options check themselves where the record is
made (deploy/verify/options.py), the backend policy and refusals live in the library (deploy/verify/plan.py)
and a backend's refusal is checked once per run, not once per chunk; one count check (core/counts.py)."""
from __future__ import annotations

import dataclasses

import pytest

from saf.deploy.backends.registry import BACKENDS, Bundle
from saf.deploy.backends.spec import BackendError
from saf.deploy.verify import verify
from saf.deploy.verify.options import VerifyOptions
from saf.deploy.verify.plan import plan_backends
from saf.export.synthetic import random_graph, random_inputs
from saf.train.data import DatasetError
from saf.core.counts import check_count


def test_check_count_names_the_flag_and_raises_the_callers_error():
    check_count("--limit", None)                          # not given: nothing to check
    check_count("--limit", 1)
    check_count("--seed", 0, 0)
    with pytest.raises(DatasetError, match=r"^--limit must be >= 1, got 0$"):
        check_count("--limit", 0, 1, DatasetError)
    with pytest.raises(ValueError, match=r"^--seed must be >= 0, got -1$"):
        check_count("--seed", -1, 0)


def test_options_check_themselves_where_made():
    assert VerifyOptions().chunk >= 1                     # None -> the default chunk
    for kw, msg in (({"lava_limit": 0}, "--lava-limit must be >= 1"), ({"fuzz": -1}, "--fuzz must be >= 0"),
                    ({"seed": -1}, "--seed must be >= 0"), ({"chunk": 0}, "--chunk must be >= 1, got 0"),
                    ({"chunk": 2.5}, "--chunk must be an integer"), ({"mismatch_bound": -0.1}, "--mismatch-bound"),
                    ({"update_golden": True}, "--update-golden needs --golden")):
        with pytest.raises(BackendError, match=msg):
            VerifyOptions(**kw)
    with pytest.raises(dataclasses.FrozenInstanceError):
        VerifyOptions().fuzz = 3


def test_verify_refuses_update_golden_without_a_folder():
    """Old code: verify(update_golden=True) without golden_dir ran and silently wrote nothing."""
    g = random_graph("dense", T=3, seed=1)
    with pytest.raises(BackendError, match="--update-golden needs --golden"):
        verify(Bundle(None, {}, g), random_inputs(g, 2), None, ["saf-int", "emulator"], update_golden=True)


def test_plan_refuses_an_explicit_list_and_swaps_in_the_default_one():
    g = random_graph("dense", T=3, seed=1, feedback=True)     # Lava's stock model refuses a feedback edge
    b = Bundle(None, {}, g)
    with pytest.raises(BackendError, match=r"^--backends: lava cannot run this network: 1 feedback edge"):
        plan_backends(b, ["emulator", "lava"])
    specs, notes = plan_backends(b, None)
    assert [s.name for s in specs] == ["saf-int", "emulator", "onnx", "lava-own"]
    assert len(notes) == 1 and notes[0].startswith("lava replaced by lava-own")
    specs, notes = plan_backends(b, ["emulator", "onnx"])
    assert [s.name for s in specs] == ["emulator", "onnx"] and notes == []


def test_a_refusal_is_checked_once_per_run_not_per_chunk():
    """Old code: run_spec checked each backend's refusal again for every chunk (8 chunks: 8 checks)."""
    calls = []

    def counted(graph):
        calls.append(1)
        return ""
    g = random_graph("dense", T=3, seed=1)
    onnx = dataclasses.replace(BACKENDS["emulator"], name="emulator-counted", refuses=counted)
    rep = verify(Bundle(None, {}, g), random_inputs(g, 8), None, [BACKENDS["saf-int"], onnx], chunk=1)
    assert rep.ok and rep.samples["emulator-counted"] == 8
    assert len(calls) == 1
    with pytest.raises(BackendError, match="^emulator-refusing cannot run this network: no$"):
        verify(Bundle(None, {}, g), random_inputs(g, 8), None,
               [BACKENDS["saf-int"], dataclasses.replace(onnx, name="emulator-refusing", refuses=lambda g: "no")])
