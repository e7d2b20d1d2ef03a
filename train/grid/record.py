"""GridSpec: the integer grid a grid-trained run trains on, recorded in its checkpoint (issue 28).

Written once, by a calibration pass (export/pipeline/grid.py runs the export quantizer on the calibrated
float network), then fixed for the rest of training: per layer the scale s (integer = float * s), the
integer threshold TH, the weight grid (largest value, step), the bias grid, and the glue's pooling gain;
for the network F, the 12-bit decay D, the readout's decay and the input quantization. Validated where made.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Optional

from saf.train.grid.rules import DECAY_ONE, STATE_BITS
from saf.core.errors import SafError

GRID_TARGETS = ("loihi", "onnx")        # --deploy-target values


class GridError(SafError, ValueError):
    """A grid record that cannot be used; one line naming the field."""


@dataclass(frozen=True)
class LayerGrid:
    scale: float                 # integer = float * scale (weights, bias, threshold)
    threshold: int               # TH (spiking layers; 0 for the readout)
    weight_max: int              # |W_int| <= weight_max
    weight_step: int             # W_int a multiple of weight_step
    bias_max: Optional[int]      # |B_int| <= bias_max (None: any)
    bias_step: int = 1           # B_int a multiple of bias_step
    gain: int = 1                # k^2 of the glue's k x k average pool: the weight reads the sum-pooled input

    def __post_init__(self):
        if not (self.scale > 0):
            raise GridError(f"grid layer scale must be > 0, got {self.scale}")
        for name in ("weight_max", "weight_step", "bias_step", "gain"):
            if int(getattr(self, name)) < 1:
                raise GridError(f"grid layer {name} must be >= 1, got {getattr(self, name)}")
        if int(self.threshold) < 0:
            raise GridError(f"grid layer threshold must be >= 0, got {self.threshold}")


@dataclass(frozen=True)
class GridSpec:
    target: str
    T: int
    decay: int                   # D: leak (4096 - D) / 4096
    frac_bits: int               # F: the state holds value << F
    readout_decay: int           # D_r: 0 (the readout sums) or D (it leaks with lam)
    input_scale: float
    input_bits: int
    input_signed: bool
    layers: tuple                # LayerGrid per spiking layer, then the readout's

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(l if isinstance(l, LayerGrid) else LayerGrid(**l)
                                                 for l in self.layers))
        if self.target not in GRID_TARGETS:
            raise GridError(f"grid target must be one of {', '.join(GRID_TARGETS)}, got {self.target!r}")
        if int(self.T) < 1 or not (0 <= int(self.decay) < DECAY_ONE):
            raise GridError(f"grid T must be >= 1 and decay in 0..{DECAY_ONE - 1}, got T={self.T}, D={self.decay}")
        if not (0 <= int(self.frac_bits) < STATE_BITS - 1):
            raise GridError(f"grid frac_bits must be in 0..{STATE_BITS - 2}, got {self.frac_bits}")
        if int(self.readout_decay) not in (0, int(self.decay)):
            raise GridError(f"grid readout_decay must be 0 or the decay {self.decay}, got {self.readout_decay}")
        if not (self.input_scale > 0) or not (1 <= int(self.input_bits) <= 24):
            raise GridError(f"grid input quantization invalid (scale {self.input_scale}, bits {self.input_bits})")
        if len(self.layers) < 2 or any(l.threshold < 1 for l in self.layers[:-1]):
            raise GridError("grid needs >= 1 spiking layer with threshold >= 1, then the readout")

    @property
    def readout_shift(self) -> int:
        """F_r: F when the readout leaks, else 0 (export/ir.py Layer.readout_shift)."""
        return int(self.frac_bits) if self.readout_decay else 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "GridSpec":
        try:
            d = json.loads(text)
            return cls(**d)
        except (TypeError, ValueError, KeyError) as e:
            raise GridError(f"grid record unreadable ({e})") from None
