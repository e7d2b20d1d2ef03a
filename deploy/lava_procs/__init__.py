"""Lava Processes and ProcessModels of the toolchain's Lava backend.

This package holds ONLY Lava Process and ProcessModel definitions: Lava's compiler imports every
module next to a Process to find its ProcessModels, so nothing else may live here.

Every model runs on a shared schedule (see deploy/lava_graph.py): logical step t of sample n of a
layer with offset o happens at Lava step  o + P * (n*T + t)  (t = 0..T-1), P being the period.
"""
from .lif import SoftResetLIF
from .pool import SumPool
from .readout import Integrator
from .source import GradedSource
from .synapse import ConvSyn, DenseSyn

__all__ = ["SoftResetLIF", "Integrator", "GradedSource", "ConvSyn", "DenseSyn", "SumPool"]
