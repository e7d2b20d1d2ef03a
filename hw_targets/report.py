"""ResourceReport: what the mapper found (per layer and in total), as JSON-able data and a table."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class LayerReport:
    """One layer's placement. A tile is (channels, rows, cols) of the output held by one core;
    `groups` > 1 means the readout's fan-in is split into partial sums that the host adds."""
    name: str
    kind: str
    neurons: int
    cores: int
    neurons_per_core: int
    tile: tuple
    groups: int
    memory_bytes_per_core: int
    input_axons_per_core: int
    output_axons_per_core: int
    host_injected: bool = False
    feasible: bool = True
    parameters: int = 0


@dataclass
class ResourceReport:
    target: str
    system: str
    layers: list                              # list[LayerReport]
    cores_used: int = 0
    chips_used: int = 0
    cores_available: Optional[int] = None
    neuron_utilization: float = 0.0           # neurons / (cores_used * neurons_per_core)
    memory_utilization: float = 0.0           # bytes used / (cores_used * bytes per core)
    parameters: int = 0                       # stored weights + biases + thresholds
    parameter_bytes: int = 0                  # ONNX: float32 initializers
    fits: bool = True
    problems: list = field(default_factory=list)

    def layer(self, name: str) -> LayerReport:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer '{name}' in the report (have: "
                       f"{', '.join(l.name for l in self.layers)})")

    def to_dict(self) -> dict:
        d = asdict(self)
        for l in d["layers"]:
            l["tile"] = list(l["tile"])
        return d

    def format(self) -> str:
        """A small human-readable table."""
        if self.cores_available is None:
            head = f"{'layer':<12} {'kind':<8} {'neurons':>9} {'params':>10}"
            rows = [f"{l.name:<12} {l.kind:<8} {l.neurons:>9} {l.parameters:>10}"
                    for l in self.layers]
            total = (f"total: {sum(l.neurons for l in self.layers)} neurons, {self.parameters} "
                     f"parameters, {self.parameter_bytes} bytes")
        else:
            head = (f"{'layer':<12} {'kind':<8} {'neurons':>9} {'cores':>6} {'n/core':>7} "
                    f"{'mem B/core':>11} {'in-ax':>6} {'out-ax':>6}")
            rows = []
            for l in self.layers:
                note = " host-injected" if l.host_injected else ""
                note += f" {l.groups} partial sums" if l.groups > 1 else ""
                note += " INFEASIBLE" if not l.feasible else ""
                rows.append(f"{l.name:<12} {l.kind:<8} {l.neurons:>9} {l.cores:>6} "
                            f"{l.neurons_per_core:>7} {l.memory_bytes_per_core:>11} "
                            f"{l.input_axons_per_core:>6} {l.output_axons_per_core:>6}{note}")
            total = (f"total: {self.cores_used} cores on {self.chips_used} chip(s) of "
                     f"{self.system} ({self.cores_available} cores); neuron utilization "
                     f"{self.neuron_utilization:.1%}, memory utilization "
                     f"{self.memory_utilization:.1%}")
        lines = [f"target {self.target}: {'fits' if self.fits else 'DOES NOT FIT'}", head,
                 "-" * len(head), *rows, total]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def synaptic_memory(l: LayerReport) -> int:
    """Bytes a layer takes over all its cores (its worst tile's memory times its cores: an upper bound)."""
    return int(l.memory_bytes_per_core) * int(l.cores)


def pool_comparison(before: ResourceReport, after: ResourceReport) -> list:
    """Per layer of the folded network (`before`): its cores and synaptic memory there and in the
    sum-pool form (`after`), where a pooled layer's figures include its pool stage ("<name>.pool")."""
    rows = []
    for b in before.layers:
        parts = [l for l in after.layers if l.name in (b.name, f"{b.name}.pool")]
        rows.append({"layer": b.name, "cores_before": int(b.cores), "memory_before": synaptic_memory(b),
                     "cores_after": sum(int(l.cores) for l in parts),
                     "memory_after": sum(synaptic_memory(l) for l in parts),
                     "pool_stage": any(l.kind == "sumpool" for l in parts)})
    return rows


def format_pool_comparison(rows: list, before: ResourceReport = None, after: ResourceReport = None) -> str:
    """The table of pool_comparison rows: folded AvgPool (before) vs sum-pool stage (after)."""
    head = f"{'layer':<12} {'cores folded':>12} {'memory folded':>14} {'cores pooled':>12} {'memory pooled':>14}"
    lines = ["synaptic memory per layer (bytes, all cores): AvgPool folded into the next layer vs "
             "a sum-pool stage (+pool: includes it)", head, "-" * len(head)]
    for r in rows:
        note = " +pool" if r["pool_stage"] else ""
        lines.append(f"{r['layer']:<12} {r['cores_before']:>12} {r['memory_before']:>14,} {r['cores_after']:>12} "
                     f"{r['memory_after']:>14,}{note}")
    tb = sum(r["memory_before"] for r in rows)
    ta = sum(r["memory_after"] for r in rows)
    cb = before.cores_used if before else sum(r["cores_before"] for r in rows)
    ca = after.cores_used if after else sum(r["cores_after"] for r in rows)
    chips = (f" ({before.chips_used} -> {after.chips_used} chip(s))" if before and after else "")
    lines.append(f"{'total':<12} {cb:>12} {tb:>14,} {ca:>12} {ta:>14,}{chips}")
    return "\n".join(lines)
