"""`saf finetune RUN --deploy-target loihi|onnx`: continue a trained or NIR-imported run on a deployment grid
(issue 28). The run's weights, spec and readout are kept; the grid is calibrated from them before the first
epoch (export/pipeline/grid.py) and every epoch trains the target's integer network (train/grid/), so the new
run's checkpoint is the network `saf export` writes bit for bit. A new run directory: RUN is never changed."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from saf.train.checkpoint import RUN_DIR, CheckpointError, load_model
from saf.train.methods.fp.checkpoint import is_fp_checkpoint
from saf.train.grid.record import GRID_TARGETS
from saf.core.outdir import check_target
from saf.core.neuron_modes import method_refusal
from saf.train.run.config import ConfigError, check_config
from saf.train.run.trainer import TrainConfig
from saf.train.spec import layer_modes, layer_syn_decays

from saf.deploy.cli.train import add_checkpoint_choice, add_data_args, pick_checkpoint

FINETUNE_LR = 0.01               # a converged model: a tenth of TrainConfig's from-scratch rate


def register(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a trained or NIR-imported run on a deployment grid",
                       description="Train RUN's weights further on the target's integer network; writes a new "
                                   "run to --out.")
    p.add_argument("checkpoint", metavar="RUN", help="a run directory or checkpoint (saf train, saf import)")
    p.add_argument("--deploy-target", required=True, choices=GRID_TARGETS, help="the grid to train on")
    p.add_argument("--epochs", type=int, default=1, help="epochs on the grid (default 1)")
    add_data_args(p, default=None)
    p.add_argument("--method", default=None, help="the run's method where it can train the net's neuron modes, "
                                                  "else bptt")
    p.add_argument("--lr", type=float, default=FINETUNE_LR, help=f"default {FINETUNE_LR}")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--force", action="store_true", help="replace the saf training run in --out")
    p.add_argument("--no-progress", action="store_true")
    add_checkpoint_choice(p)
    p.set_defaults(func=cmd_finetune)


def _config(a, stored: dict, spec: dict) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    base = {k: v for k, v in stored.items() if k in names}
    base.update(epochs=a.epochs, lr=a.lr, deploy_target=a.deploy_target, calibrate_epochs=0,
                T=int(spec.get("T") or stored.get("T") or TrainConfig.T),
                lam=float(spec["neuron"]["lam"]), theta=float(spec["neuron"]["theta"]))
    for k in ("dataset", "data_root", "batch_size", "seed"):
        if getattr(a, k, None) is not None:
            base[k] = getattr(a, k)
    method = a.method or base.get("method", "bptt")
    if not a.method and method_refusal(method, layer_modes(spec), layer_syn_decays(spec)):
        method = "bptt"                               # the LIF form trains any compare and reset
    base["method"] = method
    problem = method_refusal(method, layer_modes(spec), layer_syn_decays(spec))
    if problem:
        raise ConfigError(f"--method {method}: {problem}")
    return check_config(TrainConfig(**base))


def cmd_finetune(a) -> int:
    from saf.train.data import load_dataset
    from saf.train.run.fit import fit_and_report
    from saf.train.run.trainer import Trainer

    from saf.deploy.cli.train import grid_calibrate, data_for
    from saf.export.pipeline.grid import grid_refusal

    path = pick_checkpoint(a)
    if is_fp_checkpoint(path):
        raise ConfigError("--deploy-target: an FP run (--method fp) is approximate by nature; it has no grid forward")
    net, spec, stored = load_model(path)
    if "dsr" in spec:
        raise CheckpointError(f"{path}: a DSR run has no grid forward yet")
    cfg = _config(a, stored, spec)
    out = Path(a.out)
    check_target(out, (RUN_DIR,), a.force)
    replacing = out.is_dir() and any(out.iterdir())
    data = data_for(cfg, load_dataset)
    tr = Trainer(cfg, out, data, progress=not a.no_progress, spec=spec, grid_calibrate=grid_calibrate)
    tr.net.load_state_dict(net.state_dict())
    tr.net.readout_kind = net.readout_kind            # the readout the run was trained (or imported) with
    why = grid_refusal(tr.net, {**stored, "method": cfg.method})
    if why:
        raise ConfigError(why)
    fit_and_report(tr, out, replacing, f"fine-tuning {path} on the {cfg.deploy_target} grid with {cfg.method}, "
                   f"{cfg.epochs} epoch(s), lr {cfg.lr:g}, on {cfg.dataset}", "grid")
    return 0
