"""Run a trainer's fit() into a run directory without ever losing the previous run: replacing one
(--force), the new run is built in a temporary sibling and swapped in only when it completes."""
from __future__ import annotations

from pathlib import Path

from saf.train.checkpoint import CHECKPOINT, RUN_DIR
from saf.train.io.outdir import Staged
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
    """fit_into with the command line's two lines around it: what trains, then the final test accuracy
    (measured with `readout`) and where the checkpoint is."""
    print(intro, flush=True)
    metrics = fit_into(tr, out, replacing)
    last = metrics[-1] if metrics else {}
    print(f"done: test accuracy ({readout}) {last.get('test_acc', float('nan')):.4f}; checkpoint {out / CHECKPOINT}")
    return metrics
