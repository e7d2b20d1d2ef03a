"""Deployment targets as data, hardware rules and a core mapper.

Leaf package: stdlib + numpy only; it imports nothing from train/export/deploy (the exporter
describes its integer graph as a NetDesc of LayerDescs and asks `check` and `map_network`).

    from saf.hw_targets import get_target, check, map_network
    t = get_target("loihi2")
    violations = check(net, t)          # list[Violation]; [] means deployable as described
    report = map_network(net, t)        # ResourceReport: cores, chips, memory; report.fits

base.py: the records (Target, NetDesc, LayerDesc, Violation); targets.py: one Target per chip or runtime
and the registry; rules.py: the named rule checks; mapper.py: core placement; report.py: its result;
figures.py and energy.py: published per-operation figures and the energy/latency estimate.
"""
from __future__ import annotations

from saf.hw_targets.base import FeedbackDesc, LayerDesc, NetDesc, Severity, Target, TargetError, Violation, weight_stats
from saf.hw_targets.mapper import conv_synapse_count
from saf.hw_targets.report import LayerReport, ResourceReport
from saf.hw_targets.rules import RULES, current_bound
from saf.hw_targets.targets import LOIHI1, LOIHI2, ONNX, TARGETS, check, get_target, map_network

__all__ = ["Target", "LayerDesc", "FeedbackDesc", "NetDesc", "Violation", "Severity", "TargetError", "RULES", "check",
           "map_network", "ResourceReport", "LayerReport", "TARGETS", "get_target",
           "weight_stats", "current_bound", "conv_synapse_count", "LOIHI1", "LOIHI2", "ONNX"]
