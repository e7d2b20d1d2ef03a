"""The IR checks itself (export/ir_check.py): a Layer or Feedback that is malformed is refused where it is made,
a Graph whose records do not join is refused when it is made and by Graph.validate() (which every form runs
before it builds anything: ONNX, Lava). Each check is shown refusing one malformed record, in one IRError line
naming the layer or edge."""
from __future__ import annotations

import dataclasses
from typing import get_args

import numpy as np
import pytest

from saf.deploy.lava.graph import validate_graph as lava_validate
from saf.export.ir import LAYER_KINDS, Compare, Feedback, Graph, IRError, Layer, Reset
from saf.export.onnx_model import build_onnx_model
from saf.export.synthetic import random_graph
from saf.core.neuron_modes import COMPARES, RESETS


def _one_line(excinfo, *words) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def _dense():
    return random_graph("dense", T=3, seed=1)


def _conv():
    return random_graph("conv", T=3, seed=1)


def test_closed_types_are_neuron_modes_lists():
    assert LAYER_KINDS == ("dense", "conv", "readout")
    assert set(get_args(Reset)) == set(RESETS) and set(get_args(Compare)) == set(COMPARES)


@pytest.mark.parametrize("layer,change,words", [
    (0, dict(kind="lstm"), ("'fc0'", "unknown kind 'lstm'")),
    (0, dict(reset="hard"), ("'fc0'", "hard")),
    (0, dict(compare="=="), ("'fc0'", "==")),
    (0, dict(weight_words=3), ("'fc0'", "synapse words")),
    (0, dict(in_pool=0), ("'fc0'", "sum pool 0")),
    (0, dict(weight=np.zeros((32, 64), np.float32)), ("'fc0'", "weights must be integers")),
    (0, dict(weight=np.zeros((32, 63), np.int64)), ("'fc0'", "dense weight (32, 63) should be (32, 64)")),
    (1, dict(bias=np.zeros(15, np.int64)), ("'fc1'", "bias must be 16 integers")),
    (1, dict(bias=np.zeros(16, np.float64)), ("'fc1'", "bias must be integers")),
    (1, dict(frac_bits=-1), ("'fc1'", "frac_bits must be >= 0")),
    (1, dict(du=4096), ("'fc1'", "du must be a 12-bit current decay")),
    (1, dict(stride=0), ("'fc1'", "stride >= 1")),
    (1, dict(first_spike=True), ("'fc1'", "belong to the readout")),
    (1, dict(decay=2048), ("'fc1'", "belong to the readout")),
    (1, dict(u0=np.zeros(3, np.int64)), ("'fc1'", "u0 must be 16 integers")),
    (2, dict(v0=5), ("'readout'", "belong to spiking layers")),
    (2, dict(decay=5000), ("'readout'", "decay must be a 12-bit decay")),
])
def test_malformed_layer_refused_where_made(layer, change, words):
    good = _dense().layers[layer]
    with pytest.raises(IRError) as e:
        dataclasses.replace(good, **change)
    _one_line(e, *words)


@pytest.mark.parametrize("change,words", [
    (dict(weight=np.zeros((4, 2, 3, 3), np.int64)), ("'conv0'", "does not fit input shape (1, 8, 8)")),
    (dict(out_shape=(4, 7, 7)), ("'conv0'", "conv output shape (4, 7, 7) != computed (4, 8, 8)")),
    (dict(weight=np.zeros((4, 1, 11, 11), np.int64)), ("'conv0'", "conv output shape")),
    (dict(in_pool=3), ("'conv0'", "sum pool 3 does not divide its input (1, 8, 8)")),
])
def test_malformed_conv_refused_where_made(change, words):
    good = _conv().layers[0]
    assert good.kind == "conv" and tuple(good.in_shape) == (1, 8, 8) and tuple(good.out_shape) == (4, 8, 8)
    with pytest.raises(IRError) as e:
        dataclasses.replace(good, **change)
    _one_line(e, *words)


@pytest.mark.parametrize("change,words", [
    (dict(kind="readout"), ("feedback 1->1", "unknown kind 'readout'")),
    (dict(weight=np.zeros((16, 16))), ("feedback 1->1", "weights must be integers")),
    (dict(padding=-1), ("feedback 1->1", "padding >= 0")),
])
def test_malformed_feedback_refused_where_made(change, words):
    good = Feedback(src=1, dst=1, kind="dense", weight=np.zeros((16, 16), np.int64))
    with pytest.raises(IRError) as e:
        dataclasses.replace(good, **change)
    _one_line(e, *words)


def _swap_readout(g):
    g.layers[1], g.layers[2] = g.layers[2], g.layers[1]


def _mid_readout(g):
    g.layers.insert(1, dataclasses.replace(g.layers[-1], name="early", in_shape=(32,), weight=np.zeros((10, 32),
                                                                                                     np.int64)))


@pytest.mark.parametrize("edit,words", [
    (lambda g: setattr(g, "T", 0), ("T must be >= 1",)),
    (lambda g: setattr(g, "decay", -1), ("decay must be a 12-bit decay",)),
    (lambda g: g.layers.pop(), ("the last layer must be the readout",)),
    (_swap_readout, ("the last layer must be the readout",)),
    (_mid_readout, ("'early'", "only the last layer may be a readout")),
    (lambda g: setattr(g.layers[1], "name", "fc0"), ("layer names must be unique",)),
    (lambda g: setattr(g, "input_shape", (63,)), ("'fc0'", "input shape (64,) does not match the previous output")),
    (lambda g: setattr(g.layers[0], "out_shape", (31,)), ("'fc0'", "dense weight")),
    (lambda g: setattr(g.layers[1], "compare", "=>"), ("'fc1'", "=>")),
    (lambda g: g.feedback.append(Feedback(src=0, dst=1, kind="dense", weight=np.zeros((16, 32), np.int64))),
     ("feedback 0->1", "dst <= src")),
    (lambda g: g.feedback.append(Feedback(src=1, dst=0, kind="dense", weight=np.zeros((32, 32), np.int64))),
     ("feedback 1->0", "dense weight (32, 32) should be (32, 16)")),
])
def test_malformed_graph_refused_by_validate_and_every_form(edit, words):
    g = _dense()
    g.validate()                                       # the unedited graph passes
    edit(g)
    for check in (g.validate, lambda: build_onnx_model(g), lambda: lava_validate(g),
                  lambda: dataclasses.replace(g)):     # replace: a Graph made from these records
        with pytest.raises(IRError) as e:
            check()
        _one_line(e, *words)


def test_malformed_graph_refused_where_made():
    g = _dense()
    with pytest.raises(IRError) as e:
        Graph(layers=g.layers[:-1], T=g.T, lam=g.lam, decay=g.decay, input_shape=g.input_shape,
              input_scale=g.input_scale)
    _one_line(e, "the last layer must be the readout")


def test_valid_records_pass():
    for g in (_dense(), _conv(), random_graph("conv", T=3, feedback=True), random_graph("dense", feedback=True)):
        g.validate()
        for l in g.layers:
            dataclasses.replace(l)                         # made again: no refusal
    Layer("fc", "dense", np.zeros((2, 3), np.int64), np.zeros(2, np.int64), (3,), (2,), du=2047,
          u0=np.array([1, -1]), reset="zero", compare=">")
