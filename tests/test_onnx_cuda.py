"""onnx-cuda runs on CUDA or not at all (issue 22, item 8): onnxruntime falls back to the CPU silently
when the CUDA provider cannot start, so the session's providers are checked after creation. This
machine has no GPU: the refusal is what is tested here."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest

from saf.deploy.backends.onnx_runner import run_onnx
from saf.deploy.backends.registry import BACKENDS, Bundle, run_spec
from saf.deploy.backends.spec import BackendError
from saf.deploy.main import main
from saf.export.bundle.store import write_bundle
from saf.export.onnx_model import build_onnx_model, save_onnx_model
from saf.export.synthetic import random_graph, random_inputs

NO_GPU = "CUDAExecutionProvider" not in ort.get_available_providers()


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    g = random_graph("dense", T=4, lam=0.5, seed=1)
    out = write_bundle(g, tmp_path_factory.mktemp("c") / "b", writers={"model.onnx": lambda p: save_onnx_model(g, p)})
    return Bundle.load(out), random_inputs(g, 4, seed=0)


def test_this_machine_has_no_cuda_provider():
    assert NO_GPU          # the tests below assert the refusal; on a GPU machine they would run CUDA


def test_requested_provider_that_did_not_run_is_refused(syn):
    b, xq = syn
    model = build_onnx_model(b.graph).SerializeToString()
    with pytest.raises(BackendError) as e:
        run_onnx(model, b.graph, xq, providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                 require="CUDAExecutionProvider", where="m.onnx")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("m.onnx: CUDAExecutionProvider was requested") \
        and "CPUExecutionProvider" in msg
    assert run_onnx(model, b.graph, xq, require="CPUExecutionProvider").readout.shape == (4, 10)


def test_onnx_cuda_record_refuses_a_cpu_fallback(syn):
    """The registered runner, with the availability gate lifted: old code returned CPU results labelled
    onnx-cuda."""
    b, xq = syn
    ungated = dataclasses.replace(BACKENDS["onnx-cuda"], unavailable=lambda: "")
    with pytest.raises(BackendError, match="CUDAExecutionProvider was requested but the session runs on "
                                           "CPUExecutionProvider"):
        run_spec(ungated, b, xq)


def test_cli_refuses_in_one_line(syn, capsys):
    rc = main(["verify", str(syn[0].path), "--backends", "emulator,onnx,onnx-cuda", "--inputs", _npy(syn, capsys)])
    err = capsys.readouterr().err
    assert rc == 2 and "onnx-cuda" in err and "CUDAExecutionProvider" in err and err.count("\n") == 1, err


def _npy(syn, capsys) -> str:
    p = syn[0].path.parent / "x.npy"
    np.save(p, syn[1])
    return str(p)
