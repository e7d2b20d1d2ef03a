"""The emulator's options as one record checked where it is made (deploy/backends/emulator.py): the fault
fields inject faults (registry.FAULTS); at their defaults the emulator computes the correct semantics."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from saf.core.neuron_modes import RESETS


@dataclass(frozen=True)
class EmulatorOptions:
    """One emulator run's options, checked where made. The fault fields (FAULT_FIELDS) inject faults; at
    their defaults the emulator computes the correct semantics (export/ir.py)."""
    tie: Optional[str] = None            # None (each layer's compare), 'ge', 'gt' or 'flip'
    reset: Optional[str] = None          # None (each layer's reset), 'swap' or one of RESETS
    feedforward_delay: int = 0
    feedback_delay: int = 1
    overflow: str = "clip"               # 'clip' (saturate the state) or 'wrap'
    current_bits: int = 0                # wrap the input current u to this many bits (0: never)
    readout_leak: bool = True
    initial_potential: bool = True
    current_decay: bool = True
    first_spike: bool = True
    initial_current: bool = True
    readout_delay: int = 0
    record_spikes: bool = True
    record_potentials: bool = False
    batch_size: int = 512
    progress: bool = False
    layer_schedule: bool = True          # feed-forward, no fault: layer by layer (emulator_layers.py)

    def __post_init__(self):
        if self.tie not in (None, "ge", "gt", "flip"):
            raise ValueError(f"tie must be None, 'ge', 'gt' or 'flip', got {self.tie!r}")
        if self.reset not in (None, "swap") + RESETS:
            raise ValueError(f"reset must be None, 'swap' or one of {', '.join(RESETS)}, got {self.reset!r}")
        if self.feedforward_delay < 0 or self.feedback_delay < 1 or self.readout_delay < 0:
            raise ValueError("need feedforward_delay >= 0, feedback_delay >= 1 and readout_delay >= 0")
        if self.overflow not in ("clip", "wrap"):
            raise ValueError(f"overflow must be 'clip' or 'wrap', got {self.overflow!r}")

    def faults(self) -> dict:
        """Every fault field and its value (the result's info["faults"])."""
        return {k: getattr(self, k) for k in FAULT_FIELDS}

    def injected(self) -> dict:
        """The fault fields away from their defaults (empty: the correct semantics)."""
        return {k: v for k, v in self.faults().items() if v != _FAULT_DEFAULTS[k]}


FAULT_FIELDS = ("tie", "reset", "feedforward_delay", "feedback_delay", "overflow", "current_bits", "readout_leak",
                "initial_potential", "current_decay", "first_spike", "initial_current", "readout_delay")
_FAULT_DEFAULTS = {f.name: f.default for f in fields(EmulatorOptions) if f.name in FAULT_FIELDS}
