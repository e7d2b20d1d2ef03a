"""The options of one `saf verify` run as a record that checks itself where it is made: the CLI builds it
from its flags and library callers from keywords, so the count and bound rules run once, before any work."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from saf.core.counts import check_count
from saf.deploy.backends.spec import BackendError
from saf.deploy.verify.stream import check_chunk


@dataclass(frozen=True)
class VerifyOptions:
    lava_limit: int = 50               # subset backends (Lava) run the first lava_limit samples
    fault: Optional[str] = None        # an emulator fault injected as one more backend (registry.FAULTS)
    golden_dir: object = None          # a golden-results folder compared against (None: no golden check)
    update_golden: bool = False        # write the golden results first (needs golden_dir)
    mismatch_bound: float = 0.01       # spike mismatch rate allowed between pairs not expected exact
    progress: bool = False
    dataset: str = ""                  # the inputs' name, recorded with golden results
    fuzz: int = 0                      # fuzzed inputs beyond the dataset (0: none; fuzz.min_fuzz at least)
    seed: int = 0
    fp_ks: tuple = ()                  # FP bundles: the dt exponents of the dt table
    allow_untested_ties: bool = False  # accept a fuzz run where some layer reached no threshold tie
    chunk: Optional[int] = None        # samples run and compared at a time (None: stream.DEFAULT_CHUNK)

    def __post_init__(self):
        check_count("--lava-limit", int(self.lava_limit), 1, BackendError)
        check_count("--fuzz", int(self.fuzz), 0, BackendError)
        check_count("--seed", int(self.seed), 0, BackendError)
        object.__setattr__(self, "chunk", check_chunk(self.chunk))
        if not (0 <= self.mismatch_bound <= 1):
            raise BackendError(f"--mismatch-bound must be in [0, 1], got {self.mismatch_bound}")
        if self.update_golden and self.golden_dir is None:
            raise BackendError("--update-golden needs --golden DIR")
