"""The training loop: data, optimizer, cosine LR, per-epoch metrics, checkpoints, resume."""
from __future__ import annotations

import json
import math
import random
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from saf.train.checkpoint import (BEST, CHECKPOINT, METRICS, RESUME, best_config, best_of, load_resume, save_checkpoint,
                                  save_resume, write_run_logs)
from saf.train.data.validation import VAL_FRACTION, hold_out, val_text
from saf.train.evaluate import evaluate, float_form
from saf.train.methods.ide.solver import SolverConfig
from saf.train.functional.loss import ce_mse_loss
from saf.train.functional.surrogate import SURROGATES
from saf.train.methods.registry import check_method, readout_for, train_batch
from saf.train.modules.network import SpikingNet
from saf.core.outdir import make_dirs, remove_made
from saf.core.neuron_modes import method_refusal
from saf.train.spec import layer_modes, layer_syn_decays, load_spec, with_neuron
from saf.core.counts import check_count
from saf.core.errors import SafError


class TrainingError(SafError):
    """Training cannot go on (NaN loss, bad config); one clear line."""


class NonFiniteError(TrainingError):
    """The loss or the weights became NaN/inf; the message names the epoch. Nothing of that epoch
    is saved, so the run's last checkpoint is the last good one."""


@dataclass
class TrainConfig:
    model: str = "conv-digits"
    dataset: str = "digits"
    data_root: Optional[str] = None
    method: str = "saf-e"
    T: int = 6
    lam: float = 0.5
    theta: Optional[float] = None     # None: the spec's (1.0 unless it sets one; IDE specs 2.0)
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    mse_weight: float = 0.05
    surrogate: str = "sigmoid"
    surrogate_slope: float = 4.0     # --surrogate-slope (--alpha); stored as "alpha" before
    seed: int = 0
    device: str = "auto"
    limit_train: Optional[int] = None
    val_fraction: float = VAL_FRACTION    # share of the training set held out (stratified, seeded) to pick the best epoch
    augment: bool = True                  # the dataset's own training augmentation (cifar10 crop+flip, mnist shifts)
    encoder: str = "constant"             # static images -> x[t]: constant | rate | latency
    encoder_seed: int = 0                 # the rate encoder's seed (trains are reproducible from it)
    bin_by: str = "time"                  # event datasets: frames by "time" or event "count"
    dsr_alpha: float = 1.0           # --method dsr: fire at alpha * V_th (subtract V_th)
    dsr_readout: str = "spike"       # --method dsr: "spike" (spiking output layer) or "linear"
    ide_solver: str = "broyden"           # --method ide: backward solver (train/methods/ide/solver.py)
    ide_max_iter: int = 30
    ide_tol: float = 2e-10
    deploy_target: Optional[str] = None   # train on this target's integer grid (train/grid/, issue 28)
    calibrate_epochs: int = 1             # --deploy-target: float epochs before the grid is fixed (0: at init)
    extra: dict = field(default_factory=dict)


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise TrainingError(f"--device {name}: expected auto, cpu or cuda[:N]")
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise TrainingError(f"unknown optimizer {cfg.optimizer!r} (known: sgd, adam)")


def peak_memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def check_method_modes(method: str, spec: dict) -> None:
    """Refuse (one line) a method that cannot train the spec's per-layer reset/compare modes."""
    problem = method_refusal(method, layer_modes(spec), layer_syn_decays(spec))
    if problem:
        raise TrainingError(f"--method {method}: {problem}")


def build(cfg: TrainConfig, spec: Optional[dict] = None):
    """The network of `cfg`; `spec` (a resumed run's stored spec) replaces loading cfg.model again."""
    if spec is None:
        spec = with_neuron(load_spec(cfg.model), cfg.lam, cfg.theta)
        spec["T"] = cfg.T
    check_method_modes(cfg.method, spec)
    if cfg.method == "dsr":
        from saf.train.methods.dsr.net import DSRNet, dsr_spec
        return DSRNet(dsr_spec(spec, cfg.dsr_alpha, cfg.dsr_readout))
    return SpikingNet(spec, surrogate=cfg.surrogate, surrogate_slope=cfg.surrogate_slope, readout=readout_for(cfg.method, spec["neuron"]["lam"]))


def ide_solver_config(cfg: TrainConfig) -> SolverConfig:
    try:
        return SolverConfig(cfg.ide_solver, int(cfg.ide_max_iter), float(cfg.ide_tol))
    except ValueError as e:
        raise TrainingError(f"--ide-solver/--ide-max-iter/--ide-tol: {e}") from None


class Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, data, progress: bool = True, resume: bool = False,
                 log=print, ddp=None, spec: Optional[dict] = None, grid_calibrate=None):
        try:
            check_method(cfg.method)
        except ValueError as e:
            raise TrainingError(f"--method: {e}") from None
        if cfg.surrogate not in SURROGATES:
            raise TrainingError(f"--surrogate: unknown surrogate {cfg.surrogate!r} (known: {', '.join(SURROGATES)})")
        check_count("--T", cfg.T, 1, TrainingError)
        if cfg.method == "dsr" and ddp is not None:
            raise TrainingError("--method dsr does not support --ddp yet")
        self.ide_solver = ide_solver_config(cfg)
        if cfg.method == "ide" and ddp is not None:
            raise TrainingError("--method ide: --ddp is not supported (its backward bypasses the DDP wrapper)")
        self.cfg, self.out, self.data, self.progress, self.log = cfg, Path(out), data, progress, log
        self.grid_calibrate = grid_calibrate    # (net, config dict, data) -> GridSpec (export/pipeline/grid.py)
        if cfg.deploy_target and (grid_calibrate is None or ddp is not None):
            raise TrainingError("--deploy-target needs the grid calibration of `saf train` (and no --ddp)")
        self.ddp = ddp  # optional train.distributed.DDPContext
        self.device = pick_device(cfg.device) if ddp is None else ddp.device
        seed_everything(cfg.seed)
        self.net = build(cfg, spec).to(self.device)
        if tuple(self.net.spec["input_shape"]) != tuple(data.input_shape):
            raise TrainingError(f"model {cfg.model} expects input {list(self.net.spec['input_shape'])}, "
                                f"dataset {cfg.dataset} gives {list(data.input_shape)}")
        if data.num_classes != self.net.spec["num_classes"]:
            raise TrainingError(f"model {cfg.model} has {self.net.spec['num_classes']} classes, "
                                f"dataset {cfg.dataset} has {data.num_classes}")
        self.data, self.x_val, self.y_val = hold_out(data, cfg.val_fraction, cfg.seed, cfg.limit_train)
        if not len(self.y_val) and self.is_main:
            self.log(f"warning: --val-fraction {cfg.val_fraction:g}: no validation split, so the best checkpoint is "
                     f"the last epoch ({BEST} is not written)")
        self.model = ddp.wrap(self.net) if ddp else self.net
        self.opt = make_optimizer(cfg, self.net.parameters())
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, cfg.epochs))
        self.start_epoch = 0
        self.metrics: list = []
        self.gen = torch.Generator().manual_seed(cfg.seed)
        if resume:
            self._resume()

    @property
    def is_main(self) -> bool:
        return self.ddp is None or self.ddp.rank == 0

    def _resume(self):
        path = self.out / RESUME
        if not path.exists():
            raise TrainingError(f"{path}: nothing to resume (no resume state in {self.out})")
        st = load_resume(path)
        try:
            self.net.load_state_dict(st["model"])
        except RuntimeError:
            raise TrainingError(f"{path}: the resume state does not fit --model {self.cfg.model} "
                                f"(resume with the model the run was started with)") from None
        self.opt.load_state_dict(st["optimizer"])
        if int(st["scheduler"].get("T_max", 0)) == self.sched.T_max:
            self.sched.load_state_dict(st["scheduler"])
        else:
            # --epochs changed on resume (a run extended or shortened): continue the cosine schedule
            # of the new length, exactly as a run started with it would have reached this epoch.
            self._replay_schedule(int(st["epoch"]))
        self.gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        self.start_epoch = int(st["epoch"])
        if self.cfg.deploy_target:                 # the grid the run fixed, from its checkpoint
            from saf.train.checkpoint import read_checkpoint
            from saf.train.grid.record import GridSpec
            stored = read_checkpoint(self.out / CHECKPOINT)[2].get("grid")
            self.net.grid = GridSpec(**stored) if stored else None
        mpath = self.out / METRICS
        if mpath.exists():
            self.metrics = [json.loads(l) for l in mpath.read_text().splitlines() if l.strip()][:self.start_epoch]

    def _replay_schedule(self, epochs_done: int) -> None:
        import warnings

        for g in self.opt.param_groups:
            g["lr"] = g.get("initial_lr", self.cfg.lr)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, self.cfg.epochs))
        with warnings.catch_warnings():       # "scheduler.step() before optimizer.step()": intended
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epochs_done):
                self.sched.step()

    def _batches(self, x, y):
        n = len(x)
        perm = torch.randperm(n, generator=self.gen)
        if self.ddp:
            perm = self.ddp.shard(perm, self.cfg.batch_size)
        bs = self.cfg.batch_size // (self.ddp.world if self.ddp else 1)
        for i in range(0, len(perm), bs):
            idx = perm[i:i + bs]
            xb = x[idx]
            if self.data.augment is not None:
                xb = self.data.augment(xb, self.gen)
            yield xb.to(self.device), y[idx].to(self.device)

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        self.net.train()
        x, y = self.data.x_train, self.data.y_train        # the validation split is held out (hold_out)
        loss_fn = lambda o, t: ce_mse_loss(o, t, cfg.mse_weight)  # noqa: E731
        n_batches = math.ceil(len(x) / cfg.batch_size)
        it = self._batches(x, y)
        if self.progress and self.is_main:
            from tqdm import tqdm
            it = tqdm(it, total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        tot_loss, correct, seen = 0.0, 0, 0
        lr = self.opt.param_groups[0]["lr"]
        for b, (xb, yb) in enumerate(it):
            r = train_batch(self.model, xb, yb, cfg.T, cfg.method, self.opt, loss_fn, ide_solver=self.ide_solver)
            if not math.isfinite(r["loss"]):
                raise NonFiniteError(f"loss became {r['loss']} at epoch {epoch + 1}, batch {b + 1} (try a lower --lr)")
            tot_loss += r["loss"] * len(yb)
            correct += int((r["logits"].argmax(1) == yb).sum())
            seen += len(yb)
        self.sched.step()
        return {"train_loss": tot_loss / max(1, seen), "train_acc": correct / max(1, seen), "lr": lr}

    def fit(self) -> list:
        cfg = self.cfg
        made = make_dirs(self.out) if self.is_main else None
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                self._maybe_calibrate(epoch)
                t0 = time.perf_counter()
                if self.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                m = self.train_epoch(epoch)
                train_time = time.perf_counter() - t0
                form = float_form(self.net)
                ev = evaluate(self.net, self.data.x_test, self.data.y_test, cfg.T, form, device=self.device)
                if len(self.y_val):
                    m["val_acc"] = evaluate(self.net, self.x_val, self.y_val, cfg.T, form, device=self.device)["accuracy"]
                if cfg.deploy_target:                     # best_of never picks a float calibration epoch
                    m["on_grid"] = self.net.grid is not None
                m.update(epoch=epoch + 1, test_acc=ev["accuracy"], firing_rates=ev["firing_rates"],
                         time_s=train_time,
                         peak_memory_bytes=peak_memory_bytes(self.device))
                bad = [k for k, v in self.net.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
                if bad:
                    raise NonFiniteError(f"weights became NaN or inf at epoch {epoch + 1} ({bad[0]}; try a lower --lr)")
                self.metrics.append(m)
                if self.is_main:
                    self._save(epoch + 1)
                    self.log(f"epoch {epoch + 1:3d}  loss {m['train_loss']:.4f}  train {m['train_acc']:.4f}  "
                             f"{val_text(m)}test {m['test_acc']:.4f}  rates {' '.join(f'{r:.3f}' for r in m['firing_rates'])}  "
                             f"{train_time:.1f}s")
        except BaseException:
            if made is not None and not (self.out / CHECKPOINT).exists():
                remove_made(made)                             # nothing half-written
            raise
        return self.metrics

    def _maybe_calibrate(self, epoch: int) -> None:
        """Fix the grid once the calibration epochs are done (export/pipeline/grid.py calibrate_grid)."""
        cfg = self.cfg
        if not cfg.deploy_target or self.net.grid is not None or epoch < cfg.calibrate_epochs:
            return
        self.net.grid = self.grid_calibrate(self.net, asdict(cfg), self.data)
        g = self.net.grid
        if self.is_main:
            self.log(f"grid fixed after {epoch} float epoch(s): {cfg.deploy_target}, F={g.frac_bits}, D={g.decay}, "
                     f"input x{g.input_scale:g} ({g.input_bits} bits), thresholds "
                     f"{' '.join(str(l.threshold) for l in g.layers[:-1])}; training on the integer network")

    def _save(self, epoch: int) -> None:
        cfg = asdict(self.cfg)
        if not cfg["deploy_target"]:          # a float run's stored config stays as it was before grid training
            del cfg["deploy_target"], cfg["calibrate_epochs"]
        cfg["epochs_done"] = epoch
        best = best_of(self.metrics)
        if best is not None and best["epoch"] == epoch:
            save_checkpoint(self.out / BEST, self.net, best_config(cfg, best))
        save_checkpoint(self.out / CHECKPOINT, self.net, cfg)
        save_resume(self.out / RESUME, {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                                        "scheduler": self.sched.state_dict(), "generator": self.gen.get_state(),
                                        "torch_rng": torch.get_rng_state(), "epoch": epoch})
        from saf.train.plots import plot_curves
        write_run_logs(self.out, self.metrics, plot_curves)
