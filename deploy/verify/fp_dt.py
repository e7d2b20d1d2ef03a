"""`saf verify` / `saf run` on an FP bundle (export/pipeline/fp.py): dataset samples encoded into spike
frames with the bundle's latency code and dt, and the dt table.

The integer forms (emulator, ONNX, Lava) are compared spike for spike by verify as for every bundle
(exact required). Against the continuous-time FP model the deployment is approximate; the dt table
measures it, for dt = t_max / 2^k over a range of k, by discretizing the bundle's continuous weights
(fp-model.safetensors, authenticated with the bundle) with export/fold/fp.py and running the
emulator (bit-identical to Lava/ONNX, which verify checks at the bundle's own k):

  order agreement   fraction of samples whose output neurons' first-spike order (silent last, lowest
                    index first among equal times) is the same in the integer net as in the
                    continuous simulation
  pred. agreement   fraction with the same prediction (earliest output, lowest index on ties)
  accuracy          continuous and integer, and the change
  spike-time error  |t_int - t_cont| over output first spikes present in both (t_int = the middle
                    of the step it fell in), mean and max; plus the fraction of (sample, output)
                    pairs that fire in one and not the other
The table is a measurement: it never makes verify fail.
"""
from __future__ import annotations

import numpy as np

from saf.export.bundle.store import FP_SOURCE_FILE
from saf.export.fold.fp import first_spike_times, fold_fp, fp_frames_for, spike_frames

from saf.deploy.backends.spec import BackendError
from saf.deploy.verify.report_io import FP_TABLE_PNG  # noqa: F401 - the plot's file name in a verify directory


def is_fp_bundle(bundle) -> bool:
    return bool(bundle.graph.meta.get("fp"))


def load_fp_inputs(bundle, data, root, limit) -> tuple:
    """(frames int64 [N, T, n_in], labels, dataset name, spike times [N, n_in]) of the test split."""
    from saf.train.data import DatasetError, load_dataset
    from saf.core.counts import check_count

    name = data or bundle.dataset
    if not name:
        raise DatasetError(f"{bundle.path}: the bundle names no training dataset; pass --data NAME")
    check_count("--limit", limit, 1, DatasetError)
    ds = load_dataset(name, root)
    x, y = ds.x_test.numpy(), ds.y_test.numpy()
    if limit:
        x, y = x[:limit], y[:limit]
    n_feat = len(bundle.graph.meta["fp"]["code"]["lo"])
    if int(np.prod(x.shape[1:])) != n_feat:
        raise DatasetError(f"dataset {ds.name} has {int(np.prod(x.shape[1:]))} features, the bundle's latency "
                           f"code takes {n_feat}")
    frames, t_in = fp_frames_for(bundle.graph, x)
    return frames, y, ds.name, t_in


def load_fp_net(bundle):
    """The continuous FPNet the bundle was discretized from (its authenticated fp-model.safetensors)."""
    from saf.train.checkpoint import CheckpointError
    from saf.train.methods.fp.checkpoint import load_fp_checkpoint

    if FP_SOURCE_FILE not in bundle.files:
        raise BackendError(f"{bundle.path}: no {FP_SOURCE_FILE} in the bundle: the dt table needs the continuous weights")
    try:
        return load_fp_checkpoint(f"{bundle.path}/{FP_SOURCE_FILE}", data=bundle.files[FP_SOURCE_FILE])[0]
    except CheckpointError as e:
        raise BackendError(str(e)) from None


def _order(t: np.ndarray) -> np.ndarray:
    """Per row, output indices sorted by first-spike time (inf last), lowest index first on ties."""
    idx = np.broadcast_to(np.arange(t.shape[1]), t.shape)
    return np.stack([np.lexsort((i, r)) for i, r in zip(idx, t)]) if len(t) else np.zeros_like(t, dtype=int)


def _row(t_cont: np.ndarray, t_int: np.ndarray, labels) -> dict:
    pc, pi = np.argmin(t_cont, axis=1), np.argmin(t_int, axis=1)
    both = np.isfinite(t_cont) & np.isfinite(t_int)
    err = np.abs(t_int[both] - t_cont[both])
    row = {"order_agreement": float((_order(t_cont) == _order(t_int)).all(axis=1).mean()),
           "prediction_agreement": float((pc == pi).mean()),
           "time_error_mean": float(err.mean()) if err.size else None,
           "time_error_max": float(err.max()) if err.size else None,
           "fire_mismatch": float((np.isfinite(t_cont) != np.isfinite(t_int)).mean())}
    if labels is not None:
        y = np.asarray(labels)
        row["accuracy_continuous"] = float((pc == y).mean())
        row["accuracy_integer"] = float((pi == y).mean())
        row["accuracy_change"] = row["accuracy_integer"] - row["accuracy_continuous"]
    return row


def dt_table(net, t_in: np.ndarray, labels, ks, target) -> list:
    """One row per k (dt = t_max / 2^k): the integer net (emulator) against the continuous simulation."""
    from saf.deploy.backends.emulator import emulate

    t_cont = net.first_spikes(t_in)
    rows = []
    for k in ks:
        g = fold_fp(net, int(k), target)
        fp = g.meta["fp"]
        r = emulate(g, spike_frames(t_in, fp["dt"], g.T), record_spikes=False)
        t_int = first_spike_times(r.readout, fp["dt"], g.T)
        rows.append(dict(k=int(k), dt=fp["dt"], T=int(g.T), du=fp["du"], D=fp["D"], **_row(t_cont, t_int, labels)))
    return rows


def bundle_matches_its_source(bundle, net) -> str:
    """"" when the bundle's integer weights are fold_fp of its continuous weights at its own k, else why."""
    from saf.hw_targets import get_target

    fp = bundle.graph.meta["fp"]
    g = fold_fp(net, int(fp["k"]), get_target(bundle.graph.target))
    for a, b in zip(g.layers, bundle.graph.layers):
        if a.weight.shape != b.weight.shape or (a.weight != b.weight).any() or a.threshold != b.threshold \
                or a.du != b.du:
            return f"layer {b.name}: the bundle's integers are not fold_fp of {FP_SOURCE_FILE} at k = {fp['k']}"
    if g.T != bundle.graph.T or g.decay != bundle.graph.decay:
        return f"T/decay differ from fold_fp of {FP_SOURCE_FILE} at k = {fp['k']}"
    return ""


def fp_section(bundle, t_in, labels, ks) -> dict:
    """The verify report's FP part: the dt table and whether the bundle is its source's discretization."""
    from saf.hw_targets import get_target

    net = load_fp_net(bundle)
    fp = bundle.graph.meta["fp"]
    rows = dt_table(net, t_in, labels, ks, get_target(bundle.graph.target))
    return {"bundle_k": int(fp["k"]), "bundle_dt": fp["dt"], "samples": int(len(t_in)),
            "source_mismatch": bundle_matches_its_source(bundle, net), "rows": rows,
            "suggested_k": suggested_k(rows)}


def suggested_k(rows: list):
    """The smallest k of the table from which on every row's integer predictions all equal the continuous
    model's (None if no such k): the coarsest step that loses nothing on these samples."""
    ok = [r["prediction_agreement"] == 1.0 for r in rows]
    for i, r in enumerate(rows):
        if all(ok[i:]):
            return int(r["k"])
    return None


def format_fp(sec: dict) -> list:
    lines = [f"FP deployment vs the continuous-time model ({sec['samples']} samples; integer net = emulator, "
             f"bit-identical to the backends above at the bundle's k = {sec['bundle_k']}; a measurement, never a failure):",
             "     k         dt      T   order   pred   acc cont   acc int   change   |dt_spike| mean     max   fire mismatch"]
    for r in sec["rows"]:
        acc = (f"{r['accuracy_continuous']:>9.4f} {r['accuracy_integer']:>9.4f} {r['accuracy_change']:>+8.4f}"
               if "accuracy_continuous" in r else f"{'-':>9} {'-':>9} {'-':>8}")
        te = (f"{r['time_error_mean']:>15.4g} {r['time_error_max']:>7.4g}" if r["time_error_mean"] is not None
              else f"{'-':>15} {'-':>7}")
        mark = " <- bundle" if r["k"] == sec["bundle_k"] else ""
        lines.append(f"  {r['k']:>4} {r['dt']:>10.4g} {r['T']:>6} {r['order_agreement']:>7.3f} "
                     f"{r['prediction_agreement']:>6.3f} {acc} {te} {r['fire_mismatch']:>15.3f}{mark}")
    k = sec.get("suggested_k")
    if k is None:
        lines.append("  no k in this range gives the continuous model's predictions on every sample: try a wider --dt-exps")
    elif k != sec["bundle_k"]:
        lines.append(f"  from k = {k} on, every prediction equals the continuous model's: consider `saf export ... --dt-exp {k}`")
    else:
        lines.append(f"  the bundle's k = {k} is the smallest in this range from which every prediction equals the continuous model's")
    return lines


def plot_fp_table(sec: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sec["rows"]
    k = [r["k"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(k, [r["order_agreement"] for r in rows], "o-", label="first-spike order agreement")
    ax[0].plot(k, [r["prediction_agreement"] for r in rows], "s-", label="prediction agreement")
    if "accuracy_integer" in rows[0]:
        ax[0].plot(k, [r["accuracy_integer"] for r in rows], "^-", label="integer accuracy")
        ax[0].axhline(rows[0]["accuracy_continuous"], color="gray", ls="--", label="continuous accuracy")
    ax[0].set_xlabel("k (dt = t_max / 2^k)")
    ax[0].legend(fontsize=7)
    ax[1].semilogy(k, [r["time_error_mean"] or np.nan for r in rows], "o-", label="mean |t_int - t_cont|")
    ax[1].semilogy(k, [r["time_error_max"] or np.nan for r in rows], "s-", label="max")
    ax[1].semilogy(k, [r["dt"] for r in rows], "k:", label="dt")
    ax[1].set_xlabel("k")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
