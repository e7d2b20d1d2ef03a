"""What every inference backend returns (one interface: run(graph, xq) -> BackendResult)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class BackendResult:
    """Outputs of one backend on N samples.

    readout: int64 [N, n_classes], the readout integrators' final value R[T] (logit sums).
    spikes:  one array per spiking layer, in layer order, bool [N, T, n_out] (flattened C*H*W order),
             or None when the backend was asked not to record them.
    potentials: optional, same layout as spikes, int64 V[t] before reset (for mismatch reports).
    """
    backend: str
    readout: np.ndarray
    spikes: Optional[list] = None
    potentials: Optional[list] = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def predictions(self) -> np.ndarray:
        return self.readout.argmax(axis=1)
