"""`saf train --method fp` / `saf eval` of an FP run: FP (Lee, Haghighatshoar, Karbasi 2023; docs/methods.md#fp)
trained with exact spike-time gradients in continuous time. numpy only (float64).

One minibatch: the event simulator (functional/fp_sim.py) runs the batch, the last layer up to each
output neuron's first spike; the first-spike loss (functional/fp_loss.py) gives dL/df; per sample the
firing-time system (functional/fp_grad.py) gives the exact dL/dW by forward mode (Alg. 2) or the
adjoint (the spec's grad); Adam (the paper's optimizer, numpy here) steps on the batch mean.

Guards, counted per epoch in metrics.jsonl and warned about in one line:
- silent_outputs: output neurons with no spike in [0, t_sim) (f := t_sim, zero gradient);
- silent_labels: samples whose *label* output neuron is silent. The exact gradient is zero there (no
  spike to move), yet the cross-entropy still pushes every other output later with full weight
  (p_label ~ 0): left alone, this cascades (outputs fall silent for other samples, the loss jumps,
  accuracy falls; docs/fp.md "Divergence"). Such a sample's label neuron gets a stated surrogate
  instead, `revive_gradient`: raise its membrane peak V(t*) by dV(t*)/dW (envelope theorem) times
  the loss slope at f = t_sim, on the output layer's weights only;
- grazing: spikes whose V'(f) fell below fp_grad.GRAZE_EPS (floored there);
- near_equal_rates: alpha ~ beta (the expm1 kernel form is used; logged once per run).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from saf.train.checkpoint import BEST, CHECKPOINT, CheckpointError, best_config, best_of, write_run_logs
from saf.train.data.validation import VAL_FRACTION, split_indices, val_text
from saf.train.methods.fp.net import FPNet, LatencyCode, first_spike_prediction
from saf.train.methods.fp.checkpoint import load_fp_checkpoint, save_fp_checkpoint
from saf.train.methods.fp.specs import FP_SPECS, FPSpec
from saf.train.methods.fp.grad import build_system, grad_adjoint, grad_forward, unflatten
from saf.train.methods.fp.kernel import h, near_equal
from saf.train.methods.fp.loss import first_spike_loss
from saf.train.methods.fp.sim import simulate_batch
from saf.core.outdir import make_dirs, remove_made
from saf.core.errors import SafError


class FPError(SafError, ValueError):
    """An FP run that cannot start or go on (one line)."""


@dataclass
class FPTrainConfig:
    model: str = "fp-iris"
    dataset: str = "iris"
    epochs: int = 60
    batch_size: int = 16
    lr: float = 0.05
    seed: int = 0
    limit_train: Optional[int] = None
    grad: str = "forward"
    val_fraction: float = VAL_FRACTION   # held out of the training split (stratified, seeded) to pick the best epoch
    method: str = "fp"


def config_for(spec: FPSpec, **given) -> FPTrainConfig:
    """The spec's defaults (the paper's hyperparameters) with the given flags (None = not given)."""
    base = dict(model=spec.name, dataset=spec.dataset, epochs=spec.epochs, batch_size=spec.batch_size,
                lr=spec.lr, grad=spec.grad)
    base.update({k: v for k, v in given.items() if v is not None})
    return FPTrainConfig(**base)


def make_code(spec: FPSpec, x_train: np.ndarray) -> LatencyCode:
    if spec.code_range:
        lo, hi = spec.code_range
        return LatencyCode.fit(x_train, spec.t_early, spec.params.t_max, spec.bias_times, lo=lo, hi=hi)
    return LatencyCode.fit(x_train, spec.t_early, spec.params.t_max, spec.bias_times)


def init_net(spec: FPSpec, code: LatencyCode, n_classes: int, rng: np.random.Generator) -> FPNet:
    sizes = [code.n_inputs, *spec.hidden, n_classes]
    if len(spec.init) != len(sizes) - 1:
        raise FPError(f"FP spec {spec.name}: {len(spec.init)} initialisations for {len(sizes) - 1} layers")
    ws = [rng.normal(m, s, (sizes[l + 1], sizes[l])) for l, (m, s) in enumerate(spec.init)]
    nb = len(code.bias_times)
    if nb and spec.bias_init:
        ws[0][:, sizes[0] - nb:] = rng.normal(spec.bias_init[0], spec.bias_init[1], (sizes[1], nb))
    return FPNet(spec.params, ws, code)


class Adam:
    """Adam (Kingma & Ba) on a list of numpy arrays, betas (0.9, 0.999), eps 1e-8 (the paper's)."""

    def __init__(self, params: list, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: list, grads: list) -> None:
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def _split(rec: tuple, S: int) -> list:
    """(sample, time, neuron) records sorted by sample -> per sample (times, neuron)."""
    s, t, i = rec
    b = np.searchsorted(s, np.arange(S + 1))
    return [(t[b[k]:b[k + 1]], i[b[k]:b[k + 1]]) for k in range(S)]


def batch_gradient(net: FPNet, spec: FPSpec, t_in: np.ndarray, y: np.ndarray, grad: str = "forward") -> dict:
    """Loss and exact dL/dW (a list like net.weights) of one minibatch; also the first spikes and
    the guard counts."""
    p = net.params
    S = t_in.shape[0]
    recs = simulate_batch(p.alpha, p.beta, p.theta, p.t_sim, net.weights, t_in, first_only_last=True)
    per = [_split(r, S) for r in recs]
    first = np.full((S, net.weights[-1].shape[0]), np.inf)
    s, t, i = recs[-1]
    np.minimum.at(first, (s, i), t)
    loss, dl_df, silent = first_spike_loss(first, y, spec.tau0, spec.tau1, spec.gamma, p.t_sim)
    out_in = per[-2] if len(per) > 1 else [(t_in[k], np.arange(t_in.shape[1])) for k in range(S)]
    revive, silent_labels = revive_gradient(net, out_in, first, y, spec, p.t_sim)
    total = np.zeros(sum(w.size for w in net.weights))
    grazing = 0
    solve = grad_forward if grad == "forward" else grad_adjoint
    for k in range(S):
        if not np.any(dl_df[k]):
            continue
        sys = build_system(p.alpha, p.beta, p.theta, net.weights, t_in[k], [pl[k] for pl in per])
        grazing += sys.grazing
        total += solve(sys, dl_df[k])
    hidden = [int(np.sum(r[0] >= 0)) for r in recs[:-1]]
    grads = unflatten(total, net.weights)
    grads[-1] = grads[-1] + revive
    return {"loss": loss, "grads": grads, "first": first, "silent": silent, "silent_labels": silent_labels,
            "grazing": grazing, "hidden_spikes": hidden}


REVIVE_GRID = 1024          # points on [0, t_sim] where a silent label neuron's potential peak is sought


def revive_gradient(net: FPNet, inputs: list, first: np.ndarray, y: np.ndarray, spec: FPSpec, t_sim: float) -> tuple:
    """(surrogate dL/dW of the output layer, number of samples whose label neuron is silent).

    For each such sample: V_y(t) = sum_j W[y, j] sum_s h(t - s) over the output layer's input spikes
    (j, s) (no own spike: it is silent, so no reset), t* = the grid point of its peak, and
    dV_y(t*)/dW[y, j] = sum_s h(t* - s). The loss slope at the silent time, dL/df_y(t_sim) =
    (1 - p_y)/tau_0 + gamma e^{t_sim/tau_1}/tau_1 (>= 0: an earlier spike lowers the loss), times one
    unit of time per unit of potential, gives dL/dW[y, :] = -slope * dV_y(t*)/dW / N: a step raises
    the peak towards the threshold. Zero when no label neuron is silent (then training is exactly FP)."""
    W = net.weights[-1]
    g = np.zeros_like(W)
    rows = np.flatnonzero(~np.isfinite(first[np.arange(len(y)), y]))
    if not len(rows):
        return g, 0
    p = net.params
    grid = np.linspace(0.0, t_sim, REVIVE_GRID)
    f = np.where(np.isfinite(first), first, t_sim)
    for k in rows:
        s, j = inputs[k]
        fin = np.isfinite(s)
        s, j = np.asarray(s)[fin], np.asarray(j)[fin]
        if not len(s):
            continue
        d = grid[:, None] - s[None, :]
        H = np.where(d >= 0, h(p.alpha, p.beta, np.maximum(d, 0.0)), 0.0)    # [grid, input spikes]
        peak = int(np.argmax(H @ W[y[k], j]))
        z = -f[k] / spec.tau0
        prob = np.exp(z - z.max())
        prob /= prob.sum()
        slope = (1.0 - prob[y[k]]) / spec.tau0 + spec.gamma * np.exp(t_sim / spec.tau1) / spec.tau1
        g[y[k]] -= slope * np.bincount(j, weights=H[peak], minlength=W.shape[1]) / len(y)
    return g, int(len(rows))


def evaluate_fp(net: FPNet, t_in: np.ndarray, y: np.ndarray) -> dict:
    first = net.first_spikes(t_in)
    pred = first_spike_prediction(first)
    return {"accuracy": float(np.mean(pred == y)) if len(y) else float("nan"), "predictions": pred,
            "first": first, "silent_outputs": int((~np.isfinite(first)).sum())}


class FPTrainer:
    """Trains an FP net and writes a saf run directory (model.safetensors, metrics.jsonl, curves.png)."""

    def __init__(self, cfg: FPTrainConfig, out: Path, data, progress: bool = True, log=print):
        if cfg.model not in FP_SPECS:
            raise FPError(f"--model {cfg.model}: not an FP model (built in: {', '.join(FP_SPECS)})")
        self.spec = FP_SPECS[cfg.model]
        self.cfg, self.out, self.data, self.progress, self.log = cfg, Path(out), data, progress, log
        xtr = data.x_train.numpy().astype(np.float64).reshape(data.num_train, -1)
        ytr = data.y_train.numpy()
        if cfg.limit_train:
            xtr, ytr = xtr[:cfg.limit_train], ytr[:cfg.limit_train]
        tr_idx, va_idx = split_indices(ytr, cfg.val_fraction, cfg.seed)
        xva, self.y_val = xtr[va_idx], ytr[va_idx]
        xtr, ytr = xtr[tr_idx], ytr[tr_idx]
        if self.spec.code_range and xtr.shape[1] != len(self.spec.code_range[0]):
            raise FPError(f"--model {cfg.model} takes {len(self.spec.code_range[0])} features, dataset "
                          f"{data.name} has {xtr.shape[1]}")
        self.code = make_code(self.spec, xtr)
        self.rng = np.random.default_rng(cfg.seed)
        self.net = init_net(self.spec, self.code, data.num_classes, self.rng)
        self.t_train, self.y_train = self.code.encode(xtr), ytr
        self.t_val = self.code.encode(xva)
        if not len(self.y_val):
            log(f"warning: --val-fraction {cfg.val_fraction:g}: no validation split, so the best checkpoint is the "
                f"last epoch ({BEST} is not written)")
        self.t_test = self.code.encode(data.x_test.numpy().astype(np.float64).reshape(data.num_test, -1))
        self.y_test = data.y_test.numpy()
        self.opt = Adam(self.net.weights, cfg.lr)
        self.metrics: list = []
        p = self.spec.params
        self.near_equal = near_equal(p.alpha, p.beta, p.t_sim)
        if self.near_equal:
            self.log(f"note: near-equal time constants (alpha {p.alpha}, beta {p.beta}): the PSP kernel is "
                     f"computed as e^(-beta t) expm1((beta - alpha) t) / (beta - alpha)")

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        n = len(self.y_train)
        perm = self.rng.permutation(n)
        batches = [perm[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        it = batches
        if self.progress:
            from tqdm import tqdm
            it = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        tot, correct, silent, silent_labels, grazing = 0.0, 0, 0, 0, 0
        for b, idx in enumerate(it):
            r = batch_gradient(self.net, self.spec, self.t_train[idx], self.y_train[idx], cfg.grad)
            if not math.isfinite(r["loss"]) or not all(np.isfinite(g).all() for g in r["grads"]):
                raise FPError(f"loss or gradient became non-finite at epoch {epoch + 1}, batch {b + 1} "
                              f"(try a lower --lr)")
            self.opt.step(self.net.weights, r["grads"])
            tot += r["loss"] * len(idx)
            correct += int(np.sum(first_spike_prediction(r["first"]) == self.y_train[idx]))
            silent += r["silent"]
            silent_labels += r["silent_labels"]
            grazing += r["grazing"]
        return {"train_loss": tot / max(1, n), "train_acc": correct / max(1, n), "silent_outputs": silent,
                "silent_labels": silent_labels, "grazing": grazing, "lr": cfg.lr}

    def fit(self) -> list:
        made = make_dirs(self.out)
        try:
            for epoch in range(self.cfg.epochs):
                t0 = time.perf_counter()
                m = self.train_epoch(epoch)
                train_time = time.perf_counter() - t0
                ev = evaluate_fp(self.net, self.t_test, self.y_test)
                if len(self.y_val):
                    m["val_acc"] = evaluate_fp(self.net, self.t_val, self.y_val)["accuracy"]
                m.update(epoch=epoch + 1, test_acc=ev["accuracy"], test_silent_outputs=ev["silent_outputs"],
                         near_equal_rates=bool(self.near_equal), time_s=train_time)
                self.metrics.append(m)
                self._save(epoch + 1)
                self.log(f"epoch {epoch + 1:3d}  loss {m['train_loss']:.4f}  train {m['train_acc']:.4f}  "
                         f"{val_text(m)}test {m['test_acc']:.4f}  {train_time:.1f}s")
                if m["silent_outputs"] or m["grazing"]:
                    self.log(f"warning: epoch {epoch + 1}: {m['silent_outputs']} silent output neurons "
                             f"(f := t_sim, no gradient; {m['silent_labels']} of them label neurons, revived), "
                             f"{m['grazing']} grazing crossings (V'(f) floored)")
        except BaseException:
            if not (self.out / CHECKPOINT).exists():
                remove_made(made)
            raise
        return self.metrics

    def _save(self, epoch: int) -> None:
        cfg = asdict(self.cfg)
        cfg["epochs_done"] = epoch
        cfg["loss"] = {"gamma": self.spec.gamma, "tau0": self.spec.tau0, "tau1": self.spec.tau1}
        best = best_of(self.metrics)
        if best is not None and best["epoch"] == epoch:
            save_fp_checkpoint(self.out / BEST, self.net, best_config(cfg, best))
        save_fp_checkpoint(self.out / CHECKPOINT, self.net, cfg)
        write_run_logs(self.out, self.metrics, plot_fp_curves)


def plot_fp_curves(metrics: list, path: Path) -> None:
    """The run's curves (train/plots.py) with FP's guards as the third panel."""
    from saf.train.plots import plot_curves
    guards = [("silent outputs", [m["silent_outputs"] for m in metrics]),
              ("grazing crossings", [m["grazing"] for m in metrics])]
    plot_curves(metrics, path, loss_title="first-spike loss", acc_title="accuracy (earliest output spike)",
                test_label="test", panel=("guards (count per epoch)", guards))


def eval_fp(path, dataset: Optional[str] = None, data_root: Optional[str] = None) -> dict:
    from saf.train.data import DatasetError, load_dataset

    net, cfg = load_fp_checkpoint(path)
    data = load_dataset(dataset or cfg.get("dataset", "iris"), data_root)
    n_feat = int(np.prod(data.input_shape))
    if n_feat != len(net.code.lo) or data.num_classes != net.weights[-1].shape[0]:
        raise DatasetError(f"--data {data.name}: its samples have {n_feat} features in {data.num_classes} classes, "
                           f"the checkpoint {path} takes {len(net.code.lo)} in {net.weights[-1].shape[0]}")
    t = net.code.encode(data.x_test.numpy().astype(np.float64).reshape(data.num_test, -1))
    ev = evaluate_fp(net, t, data.y_test.numpy())
    return {"checkpoint": str(path), "dataset": data.name, "n": data.num_test, "readout": "first_spike",
            "accuracy": ev["accuracy"], "silent_outputs": ev["silent_outputs"], "params": asdict(net.params)}


__all__ = ["FPTrainer", "FPTrainConfig", "batch_gradient", "evaluate_fp", "eval_fp",
           "Adam", "init_net", "make_code", "config_for", "CheckpointError"]
