"""Fold a trained DSR network (train/methods/dsr/net.py) into plain float synapses with threshold 1, exactly.

A DSR layer l fires at alpha V^l, subtracts V^l, and receives W^l (V^(l-1) s^(l-1)) + b^l (the first
layer W^1 x + b^1). Dividing its potential by V^l changes nothing about when it fires (V^l > 0), so
it is the standard neuron with threshold 1 and

    W'^l = W^l V^(l-1) / V^l   (V^0 = 1),   b'^l = b^l / V^l,

binary spikes in and out (docs/methods.md#dsr-deployment items 1-2). The quantizer then gives each layer its own
integer threshold (its scale is relative to the threshold). A linear readout sees V^N s^N: its
weights take the factor V^N. A spiking output layer keeps the identity readout (spike counts).
Alpha firing is not folded here: quantize(dsr_alpha=...) deploys it as an initial potential (+ bias).
"""
from __future__ import annotations

from saf.export.fold.snn import fold_network


def fold_dsr(net) -> tuple:
    """(layers, feedback) of a DSRNet, every spiking layer normalised to threshold 1."""
    layers, feedback = fold_network(net)
    V = [float(v) for v in net.thresholds().detach().double().cpu()]
    prev = 1.0
    for l, fl in enumerate(layers[:-1]):
        fl.weight = fl.weight * (prev / V[l])
        fl.bias = fl.bias / V[l]
        prev = V[l]
    if not net.spiking_output:
        layers[-1].weight = layers[-1].weight * prev
    return layers, feedback
