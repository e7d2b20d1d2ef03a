"""`saf train` and `saf eval`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional

from saf.train.checkpoint import BEST, CHECKPOINT, CHECKPOINT_CHOICES, RUN_DIR, choose_checkpoint
from saf.train.data import DATASETS, DatasetError
from saf.train.data.coding import InputCoding
from saf.train.data.encoders import ENCODERS
from saf.train.grid.record import GRID_TARGETS
from saf.train.methods.dsr.net import READOUT_CHOICES as DSR_READOUTS
from saf.train.data.events.binning import BIN_MODES
from saf.train.run.distributed import DistributedError
from saf.train.functional.surrogate import SURROGATES
from saf.train.methods.ide.solver import SOLVERS
from saf.train.methods.fp.specs import FP_SPECS
from saf.train.methods.registry import CONTINUOUS_METHODS, METHODS
from saf.core.outdir import OutputError, check_target
from saf.train.run.config import OPTIMIZERS, ConfigError, check_config, flag, resumed_config
from saf.train.spec import BUILTIN, SpecError, load_spec, with_neuron
from saf.train.run.fit import done_text, fit_and_report, fit_into
from saf.train.run.trainer import TrainConfig, TrainingError, check_method_modes
from saf.core.counts import check_count

CONFIG_FIELDS = tuple(f.name for f in fields(TrainConfig))


def add_data_args(p: argparse.ArgumentParser, default: Optional[str] = "digits") -> None:
    p.add_argument("--dataset", "--data", dest="dataset", default=default,
                   help=f"dataset name ({', '.join(DATASETS)}); default {default or TrainConfig.dataset}")
    p.add_argument("--data-root", default=None, help="directory with MNIST IDX / CIFAR-10 python batches / "
                   "N-MNIST Train/ and Test/ folders (README: event datasets)")


def add_coding_args(p: argparse.ArgumentParser, d) -> None:
    """Input coding flags; like every training flag they default to None (the stored value on --resume)."""
    p.add_argument("--encoder", choices=ENCODERS,
                   help="how a static image becomes x[t]: constant current, rate (Bernoulli, seeded by "
                        f"--encoder-seed) or latency (time to first spike); carried in the checkpoint "
                        f"(default {d.encoder})")
    p.add_argument("--encoder-seed", type=int, help=f"seed of the rate encoder (default {d.encoder_seed})")
    p.add_argument("--bin-by", choices=BIN_MODES,
                   help=f"event datasets: bin events into T frames by time or by event count (default {d.bin_by})")


def data_for(cfg, load_dataset):
    """The training config's dataset as the network's per-step input (events binned, images encoded)."""
    data = load_dataset(cfg.dataset, cfg.data_root, seed=cfg.seed, T=cfg.T,
                        coding=InputCoding.from_config(vars(cfg)))
    if not cfg.augment:
        data.augment = None
    return data


def register(sub) -> None:
    p = sub.add_parser("train", help="train a spiking network (SAF-E, SAF-F, OTTT_O, OTTT_A, BPTT, DSR, IDE, FP)",
                       description="Train an SNN and write model.safetensors, metrics.jsonl and curves.png to --out.")
    # Training flags default to None ("not given"), so --resume can tell an explicit flag (which must
    # agree with the stored run) from a default (the stored value is used); defaults: TrainConfig.
    d = TrainConfig()
    p.add_argument("--model", help=f"builtin ({', '.join(BUILTIN)}) or a JSON spec path (default {d.model}); "
                   f"--method fp: {', '.join(FP_SPECS)}")
    add_data_args(p, default=None)
    add_coding_args(p, d)
    p.add_argument("--method", help=f"{', '.join(METHODS + CONTINUOUS_METHODS)} (default {d.method})")
    p.add_argument("--T", type=int, help=f"time steps per sample (default {d.T})")
    p.add_argument("--lam", type=float, help=f"leak lambda in (0, 1] (default {d.lam})")
    p.add_argument("--theta", type=float,
                   help="firing threshold (default: the spec's, 1.0 unless it sets one; IDE specs 2.0)")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}; with --resume, the new total")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default {d.optimizer}")
    p.add_argument("--lr", type=float, help=f"default {d.lr}")
    p.add_argument("--momentum", type=float, help=f"default {d.momentum}")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    p.add_argument("--mse-weight", type=float, help=f"a in (1-a) CE + a MSE (default {d.mse_weight})")
    p.add_argument("--surrogate", choices=tuple(SURROGATES), help=f"default {d.surrogate}")
    p.add_argument("--surrogate-slope", "--alpha", dest="surrogate_slope", type=float,
                   help=f"surrogate slope (sigmoid) or half-width (rect) (default {d.surrogate_slope})")
    p.add_argument("--dsr-alpha", type=float,
                   help=f"--method dsr: fire at alpha*V_th, subtract V_th (alpha in (0, 1]; default {d.dsr_alpha})")
    p.add_argument("--dsr-readout", choices=DSR_READOUTS,
                   help="--method dsr: spiking output layer read as spike counts (default) or a linear readout")
    p.add_argument("--ide-solver", choices=SOLVERS,
                   help=f"--method ide: solver for beta = (I - J^T)^-1 dL/da (default {d.ide_solver})")
    p.add_argument("--ide-max-iter", type=int, help=f"--method ide: solver iteration cap (default {d.ide_max_iter})")
    p.add_argument("--ide-tol", type=float,
                   help=f"--method ide: stop at residual norm <= tol * sqrt(batch * neurons) (default {d.ide_tol})")
    p.add_argument("--deploy-target", choices=GRID_TARGETS,
                   help="train on this target's integer network (weights, thresholds, decay, saturation and "
                        "input on the deployment grid, fixed after --calibrate-epochs float epochs): what "
                        "`saf eval` measures and `saf export` writes bit for bit (not for --method fp)")
    p.add_argument("--calibrate-epochs", type=int,
                   help=f"--deploy-target: float epochs before the grid is fixed (default {d.calibrate_epochs}; "
                        f"0, the grid calibrated from the initial weights, when --epochs is {d.calibrate_epochs})")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--device", help="auto (CUDA when available), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--no-augment", dest="augment", action="store_const", const=False, default=None,
                   help="train without the dataset's own augmentation (cifar10: random crop + flip; "
                        "mnist, fashion-mnist: random shifts of up to 2 pixels)")
    p.add_argument("--val-fraction", type=float,
                   help=f"share of the training samples held out (stratified, seeded by --seed) to pick the best "
                        f"epoch, kept as best.safetensors (default {d.val_fraction}; 0: none, best = last)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its stored configuration; --epochs N extends it")
    p.add_argument("--force", action="store_true",
                   help="replace the saf training run in --out, once the new run completes")
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
    add_checkpoint_choice(e)
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=cmd_eval)


def explicit_config(a) -> dict:
    """The training flags given on the command line (argparse leaves the others None)."""
    return {k: v for k, v in vars(a).items() if k in CONFIG_FIELDS and v is not None}


def plan_run(a) -> tuple:
    """(config, stored spec or None, replacing) from the flags, before anything is loaded or
    written: ranges checked, a resumed run's stored configuration restored, --out checked."""
    out = Path(a.out)
    if a.resume and a.force:
        raise ConfigError("--resume continues the run in --out and --force replaces it: give one of them")
    if a.resume:
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out}: exists and is not a directory")
        cfg, spec = resumed_config(out, explicit_config(a))
        return cfg, spec, False
    explicit = explicit_config(a)
    model = explicit.get("model", TrainConfig.model)
    raw = _load_spec(model)
    for name, value in _spec_settings(raw).items():   # a spec file's neuron / T: used, never overridden
        if name in explicit and explicit[name] != value:
            raise ConfigError(f"{flag(name)} {explicit[name]} conflicts with {value} in the model spec {model}; "
                              f"give one of them")
        explicit[name] = value
    if explicit.get("deploy_target") and "calibrate_epochs" not in explicit and \
            explicit.get("epochs", TrainConfig.epochs) <= TrainConfig.calibrate_epochs:
        explicit["calibrate_epochs"] = 0      # too few epochs for a float calibration epoch: calibrate at init
    cfg = check_config(TrainConfig(**explicit))
    check_method_modes(cfg.method, raw)
    check_target(out, (RUN_DIR,), a.force)
    replacing = out.is_dir() and any(out.iterdir())
    spec = with_neuron(raw, cfg.lam, cfg.theta)
    spec["T"] = cfg.T
    return cfg, spec, replacing


def _load_spec(model: str) -> dict:
    """The model spec the run trains (validated: types, ranges, shapes), before --out is touched."""
    try:
        return load_spec(model)
    except SpecError as e:
        raise SpecError(f"--model {model}: {e}" if not str(e).startswith(model) else str(e)) from None


def _spec_settings(spec: dict) -> dict:
    """The training settings a spec file carries itself (neuron lam/theta, T)."""
    got = {k: v for k, v in (spec.get("neuron") or {}).items() if k in ("lam", "theta")}
    if spec.get("T") is not None:
        got["T"] = spec["T"]
    return got


def cmd_train(a) -> int:
    from saf.train.data import load_dataset
    from saf.train.run.trainer import Trainer

    if a.method == "fp" and a.deploy_target:
        raise ConfigError("--deploy-target: --method fp is approximate by nature (continuous-time neurons); "
                          "train it without --deploy-target")
    if a.method == "fp":                    # continuous-time FP (train/methods/fp/train.py): its own numpy loop
        from saf.deploy.cli.train_fp import cmd_train_fp
        return cmd_train_fp(a)
    if getattr(a, "ddp", False):
        if a.deploy_target:
            raise ConfigError("--deploy-target: not with --ddp yet (train on one process)")
        return _train_ddp(a)
    cfg, spec, replacing = plan_run(a)
    out = Path(a.out)
    data = data_for(cfg, load_dataset)
    tr = Trainer(cfg, out, data, progress=not a.no_progress, resume=a.resume, spec=spec,
                 grid_calibrate=grid_calibrate if cfg.deploy_target else None)
    if cfg.deploy_target:                   # refused before any epoch runs
        from dataclasses import asdict
        from saf.export.pipeline.grid import grid_refusal
        why = grid_refusal(tr.net, asdict(cfg))
        if why:
            raise ConfigError(why)
    fit_and_report(tr, out, replacing, f"training {cfg.model} on {cfg.dataset} with {cfg.method}, T={cfg.T}, "
                   f"lam={cfg.lam}, device={tr.device}, {sum(p.numel() for p in tr.net.parameters())} parameters",
                   f"{cfg.deploy_target} grid" if cfg.deploy_target else "SAF form")
    return 0


def grid_calibrate(net, cfg: dict, data):
    """The run's grid from the export quantizer (export/pipeline/grid.py); a refusal is one line."""
    from saf.export.pipeline.grid import calibrate_grid
    from saf.export.pipeline.fit import ExportError
    try:
        return calibrate_grid(net, cfg, data, cfg["deploy_target"])
    except ExportError as e:
        raise TrainingError(str(e)) from None


def _train_ddp(a) -> int:
    """`saf train --ddp`, one torchrun process (train/run/distributed.py): every rank validates (the same
    files, so every rank raises the same user error before any collective) and trains on its share
    of each global batch; rank 0 writes --out (replacing an old run only on success) and prints."""
    from saf.train.data import load_dataset
    from saf.train.run.distributed import DDPContext
    from saf.train.run.trainer import Trainer

    cfg, spec, replacing = plan_run(a)
    out = Path(a.out)
    world = os.environ.get("WORLD_SIZE", "")
    if world.isdigit() and int(world) > 0 and cfg.batch_size % int(world):
        raise DistributedError(f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of "
                               f"the number of processes ({world})")
    ctx = DDPContext.from_env(cfg.device)
    try:
        data = data_for(cfg, load_dataset)
        main = ctx.is_main
        tr = Trainer(cfg, out, data, progress=main and not a.no_progress, resume=a.resume,
                     log=print if main else (lambda *_: None), ddp=ctx, spec=spec)
        ctx.barrier()
        if main:
            print(f"training {cfg.model} on {cfg.dataset} with {cfg.method}, T={cfg.T}, lam={cfg.lam}, "
                  f"DDP over {ctx.world} processes ({ctx.backend}; rank 0 on {tr.device}), global batch "
                  f"{cfg.batch_size} = {ctx.world} x {cfg.batch_size // ctx.world}, "
                  f"{sum(p.numel() for p in tr.net.parameters())} parameters")
        metrics = fit_into(tr, out, replacing, writes=main)
        ctx.barrier()
        if main:
            print(done_text(metrics, out, "SAF form"))
        return 0
    finally:
        ctx.close()


def eval_checkpoint(path, dataset=None, data_root=None, T=None) -> dict:
    from saf.train.checkpoint import load_model
    from saf.train.data import load_dataset
    from saf.train.evaluate import evaluate, float_form

    check_count("--T", T, 1, ConfigError)
    net, spec, cfg = load_model(path)
    T = int(T or spec.get("T") or cfg.get("T", 6))
    data = load_dataset(dataset or cfg.get("dataset", "digits"), data_root or cfg.get("data_root"), T=T,
                        coding=InputCoding.from_config(cfg))
    if tuple(data.input_shape) != tuple(spec["input_shape"]) or data.num_classes != spec["num_classes"]:
        raise DatasetError(f"--data {data.name}: its samples are {list(data.input_shape)} in {data.num_classes} "
                           f"classes, the checkpoint {path} takes {list(spec['input_shape'])} in "
                           f"{spec['num_classes']} classes")
    lif = evaluate(net, data.x_test, data.y_test, T, "lif")
    # a network with non-default reset/compare modes has no SAF form (core/neuron_modes.py): LIF only
    saf = evaluate(net, data.x_test, data.y_test, T, "saf") if float_form(net) == "saf" else None
    agree = None if saf is None else float((saf["predictions"] == lif["predictions"]).float().mean())
    return {"checkpoint": str(path), "dataset": data.name, "T": T, "n": len(data.y_test),
            "readout": net.readout_kind.name, "readout_leak": net.readout_kind.leak(net.lam),
            "saf_accuracy": saf and saf["accuracy"], "lif_accuracy": lif["accuracy"], "prediction_agreement": agree,
            "saf_firing_rates": saf and saf["firing_rates"], "lif_firing_rates": lif["firing_rates"],
            "grid": None if getattr(net, "grid", None) is None else net.grid.target}


def add_checkpoint_choice(p: argparse.ArgumentParser) -> None:
    """--checkpoint best|last (saf eval, saf export): which checkpoint of a run directory is used."""
    p.add_argument("--checkpoint", dest="which", choices=tuple(CHECKPOINT_CHOICES), default="best",
                   help=f"of a run directory: the best epoch by validation accuracy ({BEST}, default; a run "
                        f"without one gives its last) or the last ({CHECKPOINT})")


def pick_checkpoint(a, quiet: bool = False) -> Path:
    """The checkpoint file `a.checkpoint` and `a.which` name; its one line ("using best checkpoint
    (epoch k, val acc x) ...") goes to stdout, or stderr when stdout carries JSON (quiet)."""
    path, line = choose_checkpoint(a.checkpoint, a.which)
    if line:
        print(line, file=sys.stderr if quiet else sys.stdout, flush=True)
    a.checkpoint_file = path
    return path


def cmd_eval(a) -> int:
    from saf.train.methods.fp.checkpoint import is_fp_checkpoint
    path = pick_checkpoint(a, quiet=a.json)
    if is_fp_checkpoint(path):
        from saf.deploy.cli.train_fp import eval_fp_lines
        r, lines = eval_fp_lines(a)
    else:
        r = eval_checkpoint(path, a.dataset, a.data_root, a.T)
        lines = [f"{r['dataset']} test set ({r['n']} samples), T={r['T']}, readout {r['readout']} "
                 f"(leak {r['readout_leak']:g} per step, as trained)",
                 f"  LIF form accuracy  {r['lif_accuracy']:.4f}"]
        lines[1:1] = [f"  SAF form accuracy  {r['saf_accuracy']:.4f}"] if r["saf_accuracy"] is not None else \
            ["  SAF form           none: a layer's reset/compare is not the SAF form's (core/neuron_modes.py)"]
        if r.get("grid"):
            lines.append(f"  trained on the {r['grid']} grid: both forms are its integer network, the deployed accuracy")
        if r["prediction_agreement"] is not None:
            lines.append(f"  identical predictions: {r['prediction_agreement'] * 100:.2f}%")
    print(json.dumps(r, indent=2) if a.json else "\n".join(lines))
    return 0
