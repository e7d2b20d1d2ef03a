"""`saf train --method fp` and `saf eval` of an FP run: the flags FP refuses, the run plan, and the
calls into the FP trainer (train/methods/fp/train.py)."""
from __future__ import annotations

import math
from pathlib import Path

from saf.train.checkpoint import RUN_DIR
from saf.train.data import load_dataset
from saf.train.data.validation import VAL_FRACTION_WANT, valid_fraction
from saf.core.outdir import check_target
from saf.train.methods.fp.specs import FP_SPECS
from saf.train.methods.fp.train import FPTrainConfig, FPTrainer, config_for, eval_fp
from saf.train.run.fit import fit_and_report


# `saf train` flags that have no meaning for FP (continuous time, its own neuron and loss): refused
NOT_FOR_FP = ("T", "lam", "theta", "optimizer", "momentum", "weight_decay", "mse_weight", "surrogate", "surrogate_slope",
              "dsr_alpha", "dsr_readout", "ide_solver", "ide_max_iter", "ide_tol", "encoder", "encoder_seed",
              "bin_by")


def _flag(name: str) -> str:
    from saf.train.run.config import flag
    return flag(name)


def plan_fp(a) -> FPTrainConfig:
    from saf.train.run.config import ConfigError, SEED_MAX

    for k in NOT_FOR_FP:
        if getattr(a, k, None) is not None:
            raise ConfigError(f"{_flag(k)}: does not apply to --method fp (continuous-time neurons with the "
                              f"model spec's time constants, threshold and first-spike loss)")
    if getattr(a, "resume", False):
        raise ConfigError("--resume: not supported with --method fp (start a new run)")
    if getattr(a, "ddp", False):
        raise ConfigError("--ddp: not supported with --method fp")
    if getattr(a, "device", None) not in (None, "auto", "cpu"):
        raise ConfigError(f"--device {a.device}: --method fp runs on the CPU (numpy)")
    model = a.model
    if model is None:
        by_data = [s for s in FP_SPECS.values() if s.dataset == (a.dataset or "").lower()]
        model = by_data[0].name if by_data else "fp-iris"
    if model not in FP_SPECS:
        raise ConfigError(f"--model {model}: --method fp trains the built-in FP models ({', '.join(FP_SPECS)})")
    cfg = config_for(FP_SPECS[model], dataset=a.dataset, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                     seed=a.seed, limit_train=a.limit_train, val_fraction=getattr(a, "val_fraction", None))
    for name, ok, want in (("epochs", cfg.epochs >= 1, "an integer >= 1"),
                           ("batch_size", cfg.batch_size >= 1, "an integer >= 1"),
                           ("lr", math.isfinite(cfg.lr) and cfg.lr > 0, "a positive number"),
                           ("seed", 0 <= cfg.seed <= SEED_MAX, f"an integer in 0..{SEED_MAX}"),
                           ("limit_train", cfg.limit_train is None or cfg.limit_train >= 1, "an integer >= 1"),
                           ("val_fraction", valid_fraction(cfg.val_fraction), VAL_FRACTION_WANT)):
        if not ok:
            raise ConfigError(f"{_flag(name)} must be {want}, got {getattr(cfg, name)!r}")
    return cfg


def cmd_train_fp(a) -> int:

    cfg = plan_fp(a)
    out = Path(a.out)
    check_target(out, (RUN_DIR,), a.force)
    replacing = out.is_dir() and any(out.iterdir())
    data = load_dataset(cfg.dataset, a.data_root)
    tr = FPTrainer(cfg, out, data, progress=not a.no_progress)
    fit_and_report(tr, out, replacing, f"training {cfg.model} on {data.name} with fp ({cfg.grad}-mode exact "
                   f"gradients), sizes {tr.net.sizes}, {sum(w.size for w in tr.net.weights)} weights", "first spike")
    return 0


def eval_fp_lines(a) -> tuple:
    """`saf eval` of an FP checkpoint: (the JSON-able result, the lines printed without --json)."""
    if getattr(a, "T", None) is not None:
        from saf.train.run.config import ConfigError
        raise ConfigError("--T: does not apply to an FP checkpoint (continuous time)")
    r = eval_fp(a.checkpoint_file, a.dataset, a.data_root)
    return r, [f"{r['dataset']} test set ({r['n']} samples), FP continuous-time event simulation, readout first "
               f"spike (lowest index on ties)",
               f"  accuracy           {r['accuracy']:.4f}",
               f"  silent outputs     {r['silent_outputs']}"]
