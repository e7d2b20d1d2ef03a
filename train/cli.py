"""`saf train` and `saf eval`."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from pathlib import Path

from .checkpoint import CheckpointError
from .data import DATASETS, DatasetError
from .distributed import DistributedError
from .functional.ide_solver import SOLVERS
from .methods import METHODS
from .spec import BUILTIN, SpecError
from .trainer import TrainConfig, TrainingError

USER_ERRORS = (CheckpointError, DatasetError, DistributedError, SpecError, TrainingError)


def add_data_args(p: argparse.ArgumentParser, default: str = "digits") -> None:
    p.add_argument("--dataset", "--data", dest="dataset", default=default,
                   help=f"dataset name ({', '.join(DATASETS)}); default {default}")
    p.add_argument("--data-root", default=None, help="directory with MNIST IDX / CIFAR-10 python batches")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a spiking network (SAF-E, SAF-F, OTTT_O, OTTT_A, BPTT, IDE)",
                       description="Train an SNN and write model.safetensors, metrics.jsonl and curves.png to --out.")
    d = TrainConfig()
    p.add_argument("--model", default=d.model, help=f"builtin ({', '.join(BUILTIN)}) or a JSON spec path")
    add_data_args(p)
    p.add_argument("--method", default=d.method, help=f"{', '.join(METHODS)} (default {d.method})")
    p.add_argument("--T", type=int, default=d.T, help="time steps per sample")
    p.add_argument("--lam", type=float, default=d.lam, help="leak lambda in (0, 1]")
    p.add_argument("--theta", type=float, default=d.theta,
                   help="firing threshold (default: the spec's, 1.0 unless it sets one; IDE specs 2.0)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", default=d.optimizer, choices=("sgd", "adam"))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--mse-weight", type=float, default=d.mse_weight, help="a in (1-a) CE + a MSE")
    p.add_argument("--surrogate", default=d.surrogate, choices=("sigmoid", "rect"))
    p.add_argument("--alpha", type=float, default=d.alpha, help="surrogate slope (sigmoid) or half-width (rect)")
    p.add_argument("--ide-solver", default=d.ide_solver, choices=SOLVERS,
                   help="--method ide: solver for beta = (I - J^T)^-1 dL/da (default broyden)")
    p.add_argument("--ide-max-iter", type=int, default=d.ide_max_iter, help="--method ide: solver iteration cap")
    p.add_argument("--ide-tol", type=float, default=d.ide_tol,
                   help="--method ide: stop at residual norm <= tol * sqrt(batch * neurons)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--ddp", action="store_true",
                   help="data-parallel training over the processes of a torchrun job (NCCL on GPUs, gloo "
                        "on CPU); --batch-size is the global batch, split across the processes; rank 0 "
                        "writes --out. e.g. torchrun --nproc_per_node=4 -m saf.deploy.main train --ddp ...")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint in SAF form and LIF form (float)")
    e.add_argument("checkpoint", help="model.safetensors or a run directory")
    add_data_args(e, default=None)
    e.add_argument("--T", type=int, default=None, help="time steps (default: the checkpoint's)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=cmd_eval)


def config_from_args(a) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    kw = {k: v for k, v in vars(a).items() if k in names}
    return TrainConfig(**kw)


def cmd_train(a) -> int:
    from .data import load_dataset
    from .trainer import Trainer

    cfg = config_from_args(a)
    out = Path(a.out)
    if getattr(a, "ddp", False):
        return _train_ddp(a, cfg, out)
    if out.exists() and any(out.iterdir()) and not (a.resume or a.force):
        raise TrainingError(f"{out}: directory exists and is not empty (use --resume to continue or --force)")
    data = load_dataset(cfg.dataset, cfg.data_root, seed=cfg.seed)
    tr = Trainer(cfg, out, data, progress=not a.no_progress, resume=a.resume)
    if a.force and not a.resume and out.exists():
        # only now that model, dataset and method are known to be valid: a typo never costs a run
        import shutil
        shutil.rmtree(out)
    print(f"training {cfg.model} on {cfg.dataset} with {cfg.method}, T={cfg.T}, lam={cfg.lam}, "
          f"device={tr.device}, {sum(p.numel() for p in tr.net.parameters())} parameters")
    metrics = tr.fit()
    last = metrics[-1] if metrics else {}
    print(f"done: test accuracy (SAF form) {last.get('test_acc', float('nan')):.4f}; checkpoint {out / 'model.safetensors'}")
    return 0


def _train_ddp(a, cfg: TrainConfig, out: Path) -> int:
    """`saf train --ddp`, one torchrun process (train/distributed.py): every rank validates and
    trains on its share of each global batch; rank 0 checks, clears and writes --out and prints."""
    import shutil

    from .data import load_dataset
    from .distributed import DDPContext
    from .trainer import Trainer

    world = os.environ.get("WORLD_SIZE", "")
    if world.isdigit() and int(world) > 0 and cfg.batch_size % int(world):
        raise DistributedError(f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of "
                               f"the number of processes ({world})")
    ctx = DDPContext.from_env(cfg.device)
    try:

        def check_out():
            if out.exists() and any(out.iterdir()) and not (a.resume or a.force):
                raise TrainingError(f"{out}: directory exists and is not empty (use --resume to continue or --force)")
        ctx.run_on_main(check_out, USER_ERRORS)          # every rank raises it; none waits forever
        data = load_dataset(cfg.dataset, cfg.data_root, seed=cfg.seed)
        main = ctx.is_main
        tr = Trainer(cfg, out, data, progress=main and not a.no_progress, resume=a.resume,
                     log=print if main else (lambda *_: None), ddp=ctx)
        if main and a.force and not a.resume and out.exists():
            shutil.rmtree(out)
        ctx.barrier()
        if main:
            print(f"training {cfg.model} on {cfg.dataset} with {cfg.method}, T={cfg.T}, lam={cfg.lam}, "
                  f"DDP over {ctx.world} processes ({ctx.backend}; rank 0 on {tr.device}), global batch "
                  f"{cfg.batch_size} = {ctx.world} x {cfg.batch_size // ctx.world}, "
                  f"{sum(p.numel() for p in tr.net.parameters())} parameters")
        metrics = tr.fit()
        ctx.barrier()
        if main:
            last = metrics[-1] if metrics else {}
            print(f"done: test accuracy (SAF form) {last.get('test_acc', float('nan')):.4f}; "
                  f"checkpoint {out / 'model.safetensors'}")
        return 0
    finally:
        ctx.close()


def eval_checkpoint(path, dataset=None, data_root=None, T=None) -> dict:
    from .checkpoint import load_model
    from .data import load_dataset
    from .evaluate import evaluate

    net, spec, cfg = load_model(path)
    data = load_dataset(dataset or cfg.get("dataset", "digits"), data_root or cfg.get("data_root"))
    T = int(T or spec.get("T") or cfg.get("T", 6))
    saf = evaluate(net, data.x_test, data.y_test, T, "saf")
    lif = evaluate(net, data.x_test, data.y_test, T, "lif")
    agree = float((saf["predictions"] == lif["predictions"]).float().mean())
    return {"checkpoint": str(path), "dataset": data.name, "T": T, "n": len(data.y_test),
            "readout": net.readout_kind.name, "readout_leak": net.readout_kind.leak(net.lam),
            "saf_accuracy": saf["accuracy"], "lif_accuracy": lif["accuracy"], "prediction_agreement": agree,
            "saf_firing_rates": saf["firing_rates"], "lif_firing_rates": lif["firing_rates"]}


def cmd_eval(a) -> int:
    r = eval_checkpoint(a.checkpoint, a.dataset, a.data_root, a.T)
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['dataset']} test set ({r['n']} samples), T={r['T']}, readout {r['readout']} "
              f"(leak {r['readout_leak']:g} per step, as trained)")
        print(f"  SAF form accuracy  {r['saf_accuracy']:.4f}")
        print(f"  LIF form accuracy  {r['lif_accuracy']:.4f}")
        print(f"  identical predictions: {r['prediction_agreement'] * 100:.2f}%")
    return 0
