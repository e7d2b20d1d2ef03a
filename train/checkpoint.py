"""Checkpoints: weights in safetensors with the model spec and training config as metadata.

Nothing is unpickled: safetensors holds raw tensors and JSON strings. The resume state (optimizer,
scheduler, epoch, RNG) is a plain dict of tensors/numbers loaded with torch.load(weights_only=True).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load as load_bytes, save_file

from saf.core.files import atomic_write, header_metadata
from saf.core.outdir import OutputKind
from saf.train.networks import OWN_FORMATS, network_builder
from saf.train.readout import ReadoutError, readout_from_json
from saf.train.spec import SpecError, plan
from saf.core.errors import SafError

FORMAT = "saf-checkpoint-1"
CHECKPOINT = "model.safetensors"
BEST = "best.safetensors"          # the epoch with the highest validation accuracy (train/data/validation.py)
CHECKPOINT_CHOICES = {"best": BEST, "last": CHECKPOINT}   # --checkpoint of saf eval / saf export
RESUME = "resume.pt"
METRICS = "metrics.jsonl"
CURVES = "curves.png"


class CheckpointError(SafError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def is_saf_checkpoint(path: Path) -> bool:
    """A safetensors file whose metadata says it is a saf checkpoint (header only, no tensors read)."""
    try:
        meta = header_metadata(path)
    except (OSError, ValueError, struct.error, AttributeError):
        return False
    return meta.get("format") == FORMAT


def read_saf_file(p: Path, load, data: Optional[bytes] = None) -> tuple:
    """(metadata, tensors) of the saf checkpoint file p, read once: metadata and tensors both parsed from
    the same bytes (`data` when the caller already read and hashed them), tensors by `load` (safetensors'
    torch or numpy `load`, from bytes); CheckpointError (one line) for an unreadable file or another format."""
    try:
        data = Path(p).read_bytes() if data is None else data
        meta = header_metadata(data)
        tensors = load(data)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for corrupt files
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{p}: not a readable safetensors checkpoint ({why})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a saf checkpoint (metadata format {meta.get('format')!r})")
    return meta, tensors


# A training run directory: what `saf train --force` may replace (core/outdir.py).
RUN_DIR = OutputKind("saf training run", CHECKPOINT, is_saf_checkpoint, (CHECKPOINT, BEST, RESUME, METRICS, CURVES))


def save_checkpoint(path: Path, net, config: dict) -> None:
    from saf.train.grid.store import grid_config, grid_tensors

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors.update(grid_tensors(net))          # a grid-trained net: its integer weights (train/grid/store.py)
    config = grid_config(net, config)
    meta = {"format": FORMAT, "spec": json.dumps(net.spec), "config": json.dumps(config),
            "readout": net.readout_kind.to_json()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def write_run_logs(out: Path, metrics: list, plot) -> None:
    """metrics.jsonl (one JSON line per epoch) and curves.png (plot(metrics, path); skipped without
    matplotlib) of a run directory, each replaced atomically."""
    text = "".join(json.dumps(m) + "\n" for m in metrics)
    atomic_write(Path(out) / METRICS, lambda tmp: Path(tmp).write_text(text))
    try:
        atomic_write(Path(out) / CURVES, lambda tmp: plot(metrics, Path(tmp)))
    except ImportError:
        pass


def checkpoint_method(path) -> Optional[str]:
    """The training method a saf checkpoint's config names (file, run directory or the file's bytes;
    header only), None when it is no readable saf checkpoint."""
    try:
        p = path
        if not isinstance(path, (bytes, bytearray)):     # a path, or the file's bytes already read
            p = Path(path)
            p = p / CHECKPOINT if p.is_dir() else p
        meta = header_metadata(p)
        return json.loads(meta.get("config", "{}")).get("method") if meta.get("format") == FORMAT else None
    except (OSError, ValueError, struct.error, AttributeError, TypeError):
        return None


def resolve(path) -> Path:
    """A checkpoint file, or a run directory holding model.safetensors."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint")
    return p


def best_of(metrics: list):
    """The metrics row of the best epoch: highest val_acc, the earlier epoch on ties; None when no
    row has a validation accuracy (a run without a validation split)."""
    rows = [m for m in metrics if m.get("val_acc") is not None and m.get("on_grid", True)]   # not a calibration epoch
    return max(rows, key=lambda m: (m["val_acc"], -m["epoch"])) if rows else None


def best_config(config: dict, best: dict) -> dict:
    """The stored config of best.safetensors: the run's, with the best epoch and its validation accuracy."""
    return dict(config, epochs_done=int(best["epoch"]), best_epoch=int(best["epoch"]),
                best_val_acc=float(best["val_acc"]))


def _stored_config(p: Path) -> dict:
    try:
        return json.loads(header_metadata(p).get("config", "{}"))
    except (OSError, ValueError, struct.error, AttributeError, TypeError):
        return {}


def choose_checkpoint(path, which: str = "best") -> tuple:
    """(checkpoint file, the one line saying which, None for a file) for `saf eval` / `saf export`: a run directory
    gives its best.safetensors (which="best", the default) or model.safetensors (which="last"); a run
    without best.safetensors (no validation split, or trained before runs kept their best) gives its
    last, and says so. A file is used as given."""
    if which not in CHECKPOINT_CHOICES:
        raise CheckpointError(f"--checkpoint {which}: expected one of {', '.join(CHECKPOINT_CHOICES)}")
    p = Path(path)
    last = resolve(p)
    if not p.is_dir():
        return last, None                             # a file: nothing was chosen, nothing to say
    done = _stored_config(last).get("epochs_done", "?")
    if which == "last":
        return last, f"using last checkpoint (epoch {done}) {last}"
    best = p / BEST
    if not best.is_file() and _stored_config(last).get("source") == "nir":
        return last, f"using {last} (imported from NIR by saf import: the run's one checkpoint)"
    if not best.is_file():
        return last, (f"using last checkpoint (epoch {done}) {last}: the run has no {BEST} "
                      f"(trained without a validation split)")
    cfg = _stored_config(best)
    acc = cfg.get("best_val_acc")
    acc = f"{acc:.4f}" if isinstance(acc, (int, float)) else "?"
    return best, (f"using best checkpoint (epoch {cfg.get('best_epoch', '?')}, val acc {acc}) {best}; "
                  f"--checkpoint last for epoch {done}")


RENAMED_CONFIG_KEYS = {"alpha": "surrogate_slope"}   # a stored config's old key -> its name now


def upgraded_config(config: dict) -> dict:
    """A stored training config with old keys read under their new names (RENAMED_CONFIG_KEYS); a file
    that has both keeps the new one. Checkpoints written now store the new names."""
    if not isinstance(config, dict):
        return config
    out = dict(config)
    for old, new in RENAMED_CONFIG_KEYS.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def read_checkpoint(path, with_readout: bool = False, data: Optional[bytes] = None) -> tuple:
    """Returns (state_dict, spec, config), validated, and the recorded Readout (train/readout.py; a
    checkpoint without the record has the non-leaking sum) when with_readout. `data`: the file's bytes,
    already read (and hashed) by the caller; `path` then only names it. Raises CheckpointError with
    one clear line."""
    p = resolve(path) if data is None else Path(path)
    meta, tensors = read_saf_file(p, load_bytes, data)
    try:
        spec, config = json.loads(meta["spec"]), upgraded_config(json.loads(meta["config"]))
        plan(spec)
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p}: spec/config metadata unreadable ({e})") from None
    except SpecError as e:
        raise CheckpointError(f"{p}: invalid model spec ({e})") from None
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{p}: tensor {k} contains NaN or inf")
    try:
        readout = readout_from_json(meta.get("readout"))
    except ReadoutError as e:
        raise CheckpointError(f"{p}: {e}") from None
    return (tensors, spec, config, readout) if with_readout else (tensors, spec, config)


def load_model(path, device: str = "cpu", data: Optional[bytes] = None):
    """Build the network from the checkpoint's spec and load its weights (shapes checked); `data`: the
    file's bytes when the caller already read them (read_checkpoint)."""
    from saf.train.modules.network import SpikingNet

    p = resolve(path) if data is None else Path(path)
    method = checkpoint_method(p if data is None else data)
    if method in OWN_FORMATS:          # a method's own network (FP's), registered in train/networks.py
        raise CheckpointError(f"{p}: {OWN_FORMATS[method]}")
    tensors, spec, config, readout = read_checkpoint(p, with_readout=True, data=data)
    from saf.train.grid.store import GRID_KEY, split_grid
    tensors, _ = split_grid(tensors)
    build = network_builder(spec)      # --method dsr's network (train/methods/dsr/__init__.py)
    if build is not None:
        net = build(spec, readout)
    else:
        net = SpikingNet(spec, surrogate=config.get("surrogate", "sigmoid"),
                         surrogate_slope=float(config.get("surrogate_slope", 4.0)),
                         readout=readout)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{p}: spec and weights disagree (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{p}: spec and weights disagree: {k} has shape {list(tensors[k].shape)}, "
                                  f"the spec needs {list(v.shape)}")
    net.load_state_dict(tensors)
    if config.get(GRID_KEY) is not None:        # trained on the deployment grid: its forward is the grid's
        from saf.train.grid.record import GridError, GridSpec
        try:
            net.grid = GridSpec(**config[GRID_KEY])
        except (GridError, TypeError) as e:
            raise CheckpointError(f"{p}: {e}") from None
    return net.to(device), spec, config


def save_resume(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_resume(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means an unusable resume file
        raise CheckpointError(f"{path}: cannot resume ({str(e).splitlines()[0]})") from None
