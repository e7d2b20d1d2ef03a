"""`saf import` refuses malformed or unsupported NIR files (issue 23, "Done when"): exit 2, one line naming
the file and the node or edge, nothing written. Every file is a real NIR file written by the `nir` package
(or one damaged on disk after it was)."""
from __future__ import annotations

import numpy as np
import pytest

import nir  # noqa: E402  (a main dependency; snntorch and norse: the test extra)

from saf.deploy.main import main  # noqa: E402


def _lif(n, **kw):
    p = dict(tau=np.full(n, 2e-4), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    p.update(kw)
    return nir.LIF(**p)


def _graph(nodes=None, edges=None, ro_in=16, drop=()):
    """Input(16) -> fc Affine -> lif LIF -> ro Affine(10) -> Output, with nodes/edges replaced or added."""
    n = {"in": nir.Input(input_type={"input": np.array([16])}),
         "fc": nir.Affine(weight=np.full((16, 16), 0.1), bias=np.zeros(16)), "lif": _lif(16),
         "ro": nir.Affine(weight=np.ones((10, ro_in)), bias=np.zeros(10)),
         "out": nir.Output(output_type={"output": np.array([10])})}
    n.update(nodes or {})
    for k in drop:
        n.pop(k)
    e = edges if edges is not None else [("in", "fc"), ("fc", "lif"), ("lif", "ro"), ("ro", "out")]
    return nir.NIRGraph(nodes=n, edges=e, type_check=False)


def _conv_graph(**conv):
    c = dict(input_shape=np.array([8, 8]), weight=np.ones((4, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4))
    c.update(conv)
    n = {"in": nir.Input(input_type={"input": np.array([1, 8, 8])}), "c": nir.Conv2d(**c), "lif": _lif((4, 8, 8)),
         "fl": nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0, end_dim=-1),
         "ro": nir.Affine(weight=np.ones((10, 256)), bias=np.zeros(10)),
         "out": nir.Output(output_type={"output": np.array([10])})}
    return nir.NIRGraph(nodes=n, edges=[("in", "c"), ("c", "lif"), ("lif", "fl"), ("fl", "ro"), ("ro", "out")],
                        type_check=False)


def _truncated(path):
    nir.write(str(path), _graph())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES = {
    # name: (make the file at path, words the one line must hold)
    "wrong shapes": (lambda p: nir.write(str(p), _graph(ro_in=20)), ["lif", "ro", "type mismatch"]),
    "missing edge target": (lambda p: nir.write(str(p), _graph(edges=[("in", "fc"), ("fc", "lif"), ("lif", "ro"),
                                                                      ("ro", "nothere")])), ["'nothere'"]),
    "unsupported node": (lambda p: nir.write(str(p), _graph(nodes={"d": nir.Delay(delay=np.ones(16))},
                                                           edges=[("in", "fc"), ("fc", "lif"), ("lif", "d"),
                                                                  ("d", "ro"), ("ro", "out")])), ["'d'", "Delay"]),
    "cycle through a non-neuron": (lambda p: nir.write(str(p), _graph(
        nodes={"fc2": nir.Affine(weight=np.eye(16), bias=np.zeros(16))},
        edges=[("in", "fc"), ("fc", "fc2"), ("fc2", "fc"), ("fc", "lif"), ("lif", "ro"), ("ro", "out")])),
        ["'fc2'", "'fc'", "cycle"]),
    "NaN weights": (lambda p: nir.write(str(p), _graph(nodes={"fc": nir.Affine(weight=np.full((16, 16), np.nan),
                                                                                 bias=np.zeros(16))})), ["'fc'", "NaN"]),
    "truncated HDF5": (_truncated, ["truncated"]),
    "not a NIR file": (lambda p: p.write_text("weights: 1 2 3\n"), ["HDF5"]),
    # a graph ending in the spiking node imports (tests/test_nir_spiking_output.py); one ending in glue after it
    # has no readout saf maps
    "ends in glue": (lambda p: nir.write(str(p), _graph(drop=("ro",), nodes={"out": nir.Output(
        output_type={"output": np.array([16])}), "fl": nir.Flatten(input_type={"input": np.array([16])},
                                                                   start_dim=0, end_dim=-1)},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "fl"), ("fl", "out")])), ["'fl'", "reads out"]),
    "thresholds differ": (lambda p: nir.write(str(p), _graph(nodes={"lif": _lif(16, v_threshold=np.linspace(1, 2, 16))})),
                          ["'lif'", "v_threshold"]),
    "v_reset not 0": (lambda p: nir.write(str(p), _graph(nodes={"lif": _lif(16, v_reset=np.full(16, 0.5))})),
                      ["'lif'", "v_reset"]),
    "branch": (lambda p: nir.write(str(p), _graph(nodes={"ro2": nir.Affine(weight=np.ones((10, 16)), bias=np.zeros(10))},
                                                 edges=[("in", "fc"), ("fc", "lif"), ("lif", "ro"), ("lif", "ro2"),
                                                        ("ro", "out"), ("ro2", "out")])), ["'lif'", "branches"]),
    "leak out of range": (lambda p: nir.write(str(p), _graph(nodes={"lif": _lif(16, tau=np.full(16, 5e-5))})),
                          ["'lif'", "--dt"]),
    "dilated conv": (lambda p: nir.write(str(p), _conv_graph(dilation=2, padding=2)), ["'c'", "dilation"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_nir_file_exits_2_in_one_line_and_writes_nothing(case, tmp_path, capsys):
    make, words = CASES[case]
    src = tmp_path / "model.nir"
    make(src)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "run"
    assert main(["import", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("saf import: error: ") and str(src) in err, err
    for w in words:
        assert w in err, (w, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before          # nothing written, not even a temp dir


def test_the_well_formed_base_graph_imports(tmp_path, capsys):
    """The graphs above differ from an importable one only by their defect (the base imports, exit 0)."""
    src = tmp_path / "model.nir"
    nir.write(str(src), _graph())
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "assumed: --dt 0.0001" in capsys.readouterr().out
    nir.write(str(src), _conv_graph())
    assert main(["import", str(src), "--out", str(tmp_path / "run2")]) == 0
