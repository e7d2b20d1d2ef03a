"""Deployment targets as data, hardware rules and a core mapper.

Leaf package: stdlib + numpy only; it imports nothing from train/export/deploy (the exporter
describes its integer graph as a NetDesc of LayerDescs and asks `check` and `map_network`).

    from saf.hw_targets import get_target, check, map_network
    t = get_target("loihi2")
    violations = check(net, t)          # list[Violation]; [] means deployable as described
    report = map_network(net, t)        # ResourceReport: cores, chips, memory; report.fits
"""
from __future__ import annotations

from saf.hw_targets.base import FeedbackDesc, LayerDesc, NetDesc, Severity, Target, TargetError, Violation, weight_stats
from saf.hw_targets.loihi1 import LOIHI1
from saf.hw_targets.loihi2 import LOIHI2
from saf.hw_targets.mapper import conv_synapse_count, map_network
from saf.hw_targets.onnx import ONNX
from saf.hw_targets.report import LayerReport, ResourceReport
from saf.hw_targets.rules import RULES, check, current_bound

# "loihi" means the current generation.
TARGETS = {"loihi": LOIHI2, "loihi1": LOIHI1, "loihi2": LOIHI2, "onnx": ONNX}


def get_target(name) -> Target:
    """The Target called `name` (case-insensitive); a Target passes through."""
    if isinstance(name, Target):
        return name
    key = str(name).strip().lower()
    if key not in TARGETS:
        raise TargetError(f"unknown target '{name}' (known: {', '.join(sorted(TARGETS))})")
    return TARGETS[key]


__all__ = ["Target", "LayerDesc", "FeedbackDesc", "NetDesc", "Violation", "Severity", "TargetError", "RULES", "check",
           "map_network", "ResourceReport", "LayerReport", "TARGETS", "get_target",
           "weight_stats", "current_bound", "conv_synapse_count", "LOIHI1", "LOIHI2", "ONNX"]
