"""Lava Processes and ProcessModels of the toolchain's Lava backend.

This package holds ONLY Lava Process and ProcessModel definitions: Lava's compiler imports every
module next to a Process to find its ProcessModels, so nothing else may live here.

Every model runs on a shared schedule (see deploy/lava/graph.py): logical step t of sample n of a
layer with offset o happens at Lava step  o + P * (n*T + t)  (t = 0..T-1), P being the period.
"""
from saf.deploy.lava.procs.lif import SoftResetLIF
from saf.deploy.lava.procs.pool import SumPool
from saf.deploy.lava.procs.readout import Integrator
from saf.deploy.lava.procs.source import GradedSource
from saf.deploy.lava.procs.synapse import ConvSyn, DenseSyn

__all__ = ["SoftResetLIF", "Integrator", "GradedSource", "ConvSyn", "DenseSyn", "SumPool"]
