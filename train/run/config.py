"""`saf train`'s configuration: the range of every numeric flag, and what `--resume` restores.

A resumed run continues with the configuration stored in its checkpoint (method, model spec, T,
lam, theta, optimizer, lr, batch size, surrogate, seed, ...). A flag given explicitly on the command
line must agree with it; only the flags in RESUME_MAY_CHANGE may differ (extending --epochs is the
supported change; --device and --data-root say where, not what, it trains).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from saf.train.grid.record import GRID_TARGETS
from saf.train.checkpoint import CHECKPOINT, RESUME, read_checkpoint
from saf.train.data.encoders import ENCODERS
from saf.train.data.validation import VAL_FRACTION_WANT, valid_fraction
from saf.train.data.events.binning import BIN_MODES
from saf.train.methods.dsr.net import READOUT_CHOICES as DSR_READOUTS
from saf.train.methods.ide.solver import SOLVERS
from saf.train.functional.surrogate import SURROGATES
from saf.train.methods.registry import CONTINUOUS_METHODS, METHODS
from saf.train.run.trainer import TrainConfig
from saf.core.errors import SafError

RESUME_MAY_CHANGE = ("epochs", "device", "data_root")
OPTIMIZERS = ("sgd", "adam")
SEED_MAX = 2 ** 32 - 1                      # numpy's seed range


class ConfigError(SafError, ValueError):
    """A training flag out of range or in conflict with the run being resumed (one line)."""


FLAG_NAMES = {"T": "--T", "surrogate_slope": "--surrogate-slope/--alpha"}   # a field's flag where not --field-name


def flag(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Rule:
    field: str
    ok: Callable[[object], bool]
    want: str                                # "an integer >= 1", shown as "--X must be <want>, got V"
    choices: tuple = ()                      # a name from a list: "unknown method 'x' (known: ...)"


RULES = (
    Rule("T", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    Rule("epochs", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    Rule("batch_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    Rule("limit_train", lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1"),
    Rule("augment", lambda v: isinstance(v, bool), "true or false"),
    Rule("val_fraction", valid_fraction, VAL_FRACTION_WANT),
    Rule("seed", lambda v: isinstance(v, int) and 0 <= v <= SEED_MAX, f"an integer in 0..{SEED_MAX}"),
    Rule("lam", lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]"),
    Rule("theta", lambda v: v is None or (_finite(v) and v > 0), "a positive number"),
    Rule("lr", lambda v: _finite(v) and v > 0, "a positive number"),
    Rule("momentum", lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)"),
    Rule("weight_decay", lambda v: _finite(v) and v >= 0, "a number >= 0"),
    Rule("mse_weight", lambda v: _finite(v) and 0 <= v <= 1, "in [0, 1]"),
    Rule("surrogate_slope", lambda v: _finite(v) and v > 0, "a positive number"),
    Rule("method", lambda v: v in METHODS, "", METHODS + CONTINUOUS_METHODS),   # fp is routed before (train/methods/fp/train.py)
    Rule("optimizer", lambda v: v in OPTIMIZERS, "", OPTIMIZERS),
    Rule("surrogate", lambda v: v in SURROGATES, "", tuple(SURROGATES)),
    Rule("encoder", lambda v: v in ENCODERS, "", ENCODERS),
    Rule("encoder_seed", lambda v: isinstance(v, int) and 0 <= v <= SEED_MAX, f"an integer in 0..{SEED_MAX}"),
    Rule("bin_by", lambda v: v in BIN_MODES, "", BIN_MODES),
    Rule("dsr_alpha", lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]"),
    Rule("dsr_readout", lambda v: v in DSR_READOUTS, "", DSR_READOUTS),
    Rule("ide_solver", lambda v: v in SOLVERS, "", SOLVERS),
    Rule("ide_max_iter", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    Rule("ide_tol", lambda v: _finite(v) and v > 0, "a positive number"),
    Rule("deploy_target", lambda v: v is None or v in GRID_TARGETS, "", GRID_TARGETS),
    Rule("calibrate_epochs", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
)


def check_config(cfg: TrainConfig) -> TrainConfig:
    for r in RULES:
        v = getattr(cfg, r.field)
        if r.choices and not r.ok(v):
            raise ConfigError(f"{flag(r.field)}: unknown {r.field} {v!r} (known: {', '.join(r.choices)})")
        if not r.ok(v):
            raise ConfigError(f"{flag(r.field)} must be {r.want}, got {v!r}")
    if cfg.deploy_target and cfg.epochs <= cfg.calibrate_epochs:
        raise ConfigError(f"--epochs {cfg.epochs}: --deploy-target trains on the grid after --calibrate-epochs "
                          f"{cfg.calibrate_epochs} float epoch(s); give --epochs > {cfg.calibrate_epochs}")
    return cfg


def _same(a, b) -> bool:
    if _finite(a) and _finite(b):
        return float(a) == float(b)
    return a == b


def resumed_config(out: Path, explicit: dict) -> tuple:
    """(TrainConfig, stored model spec) of the run in `out`, with the explicit flags that may change
    applied. Refuses a conflicting flag, and an --epochs that would not train any further."""
    out = Path(out)
    ckpt = out / CHECKPOINT
    if not (out / RESUME).is_file() or not ckpt.is_file():
        raise ConfigError(f"{out}: nothing to resume (no {RESUME} and {CHECKPOINT} in {out})")
    _, spec, stored = read_checkpoint(ckpt)
    names = [f.name for f in fields(TrainConfig)]
    base = {k: stored[k] for k in names if k in stored}
    base.setdefault("val_fraction", 0.0)     # a run from before validation splits trained on all of its set
    for k, v in explicit.items():
        if k not in RESUME_MAY_CHANGE and k in base and not _same(v, base[k]):
            raise ConfigError(f"{ckpt}: {flag(k)} {v} conflicts with the run's stored {k} {base[k]!r}; --resume "
                              f"continues with the stored configuration (only "
                              f"{', '.join(flag(n) for n in RESUME_MAY_CHANGE)} may change)")
    base.update({k: v for k, v in explicit.items() if k in RESUME_MAY_CHANGE})
    cfg = check_config(TrainConfig(**base))
    done = int(stored.get("epochs_done", 0))
    if cfg.epochs <= done:
        raise ConfigError(f"--epochs {cfg.epochs}: the run in {out} has trained {done} epochs already; "
                          f"give --epochs N with N > {done} to extend it")
    return cfg, spec
