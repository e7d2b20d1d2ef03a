"""How a sample becomes the network's input per step: a typed record carried from training (checkpoint
config) through export (bundle meta["input_coding"]) to verify/run, so every form sees the same x[t]."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from saf.train.data.base import DatasetError
from saf.train.data.encoders import check_encoder
from saf.train.data.events.binning import check_bin_by


@dataclass(frozen=True)
class InputCoding:
    encoder: str = "constant"     # static images: constant | rate | latency (train/data/encoders.py)
    seed: int = 0                 # the rate encoder's seed
    bin_by: str = "time"          # event datasets: frames by "time" or by event "count"

    def __post_init__(self):
        check_encoder(self.encoder)
        check_bin_by(self.bin_by)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise DatasetError(f"encoder seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "InputCoding":
        d = d or {}
        unknown = set(d) - {"encoder", "seed", "bin_by"}
        if unknown:
            raise DatasetError(f"input coding has unknown keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_config(cls, cfg: dict) -> "InputCoding":
        """From a training config (TrainConfig fields encoder, encoder_seed, bin_by; absent: defaults)."""
        return cls(encoder=cfg.get("encoder") or "constant", seed=int(cfg.get("encoder_seed") or 0),
                   bin_by=cfg.get("bin_by") or "time")
