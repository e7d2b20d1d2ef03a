"""Run a trainer's fit() into a run directory without ever losing the previous run: replacing one
(--force), the new run is built in a temporary sibling and swapped in only when it completes."""
from __future__ import annotations

from pathlib import Path

from saf.train.checkpoint import BEST, CHECKPOINT, RUN_DIR, best_of
from saf.core.outdir import Staged
from saf.train.run.trainer import NonFiniteError, TrainingError


def fit_into(tr, out: Path, replacing: bool, writes: bool = True) -> list:
    """Run tr.fit(). Replacing an existing run (--force), the new run is built in a temporary
    sibling and swapped in only when it completes; until then the old run is untouched."""
    try:
        if replacing and writes:
            with Staged(out, (RUN_DIR,), force=True) as tmp:
                tr.out = tmp
                metrics = tr.fit()
            tr.out = out
            return metrics
        return tr.fit()
    except NonFiniteError as e:
        if replacing:
            kept = f"the previous run in {out} is unchanged"
        elif (out / CHECKPOINT).exists():
            kept = f"last good checkpoint (epoch {len(tr.metrics)}) kept in {out}"
        else:
            kept = "no checkpoint written"
        raise TrainingError(f"{e}; {kept}") from None


def fit_and_report(tr, out: Path, replacing: bool, intro: str, readout: str) -> list:
    """fit_into with the command line's lines around it: what trains, then the test accuracy (measured
    with `readout`) of the best epoch by validation accuracy (what eval/export use by default) and of
    the last, and where both checkpoints are."""
    print(intro, flush=True)
    metrics = fit_into(tr, out, replacing)
    print(done_text(metrics, out, readout))
    return metrics


def done_text(metrics: list, out: Path, readout: str) -> str:
    """`saf train`'s closing line(s): the best epoch's test accuracy and checkpoint, then the last's."""
    last = metrics[-1] if metrics else {}
    acc = f"test accuracy ({readout}) {last.get('test_acc', float('nan')):.4f}"
    best = best_of(metrics)
    if best is None:
        return f"done: {acc} at the last epoch (no validation split: best = last); checkpoint {out / CHECKPOINT}"
    return (f"done: test accuracy ({readout}) {best['test_acc']:.4f} at the best epoch {best['epoch']} (val acc "
            f"{best['val_acc']:.4f}); checkpoint {out / BEST}\n      last epoch {last.get('epoch', '?')}: {acc}; "
            f"checkpoint {out / CHECKPOINT}")
