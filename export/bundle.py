"""Bundle on disk: one directory with manifest.json, weights.npz and model.onnx.

Written to a temporary sibling directory and swapped into place only when complete (train/outdir.py),
so a failed export leaves nothing behind and `--force` replaces only a saf bundle. Every file's
sha256 is in the manifest; loading checks them (tamper detection).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from saf.train.outdir import OutputKind, Staged

from .ir import Feedback, Graph, Layer

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
ONNX_FILE = "model.onnx"
SOURCE_FILE = "source.safetensors"     # the trained float checkpoint, copied


class BundleError(Exception):
    """A bundle that cannot be loaded: the message names the file and what is wrong."""


def _is_saf_manifest(path: Path) -> bool:
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "format_version" in m and isinstance(m.get("files"), dict)


# A bundle directory: what `saf export --force` may replace (train/outdir.py).
BUNDLE_DIR = OutputKind("saf bundle", MANIFEST, _is_saf_manifest, (MANIFEST, WEIGHTS, ONNX_FILE, SOURCE_FILE))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _layer_meta(l: Layer) -> dict:
    return {"name": l.name, "kind": l.kind, "in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
            "threshold": int(l.threshold), "stride": l.stride, "padding": l.padding,
            "scale": float(l.scale), "frac_bits": int(l.frac_bits),
            "weight_shape": list(l.weight.shape)}


def graph_manifest(g: Graph) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "target": g.target, "T": g.T, "lam": g.lam, "decay": g.decay,
        "input_shape": list(g.input_shape), "input_scale": g.input_scale,
        "input_bits": g.input_bits, "input_signed": g.input_signed,
        "layers": [_layer_meta(l) for l in g.layers],
        "feedback": [{"src": f.src, "dst": f.dst, "kind": f.kind, "stride": f.stride,
                      "padding": f.padding, "weight_shape": list(f.weight.shape)} for f in g.feedback],
        "meta": g.meta,
    }


def _arrays(g: Graph) -> dict:
    out = {}
    for i, l in enumerate(g.layers):
        out[f"layer{i}_weight"] = l.weight.astype(np.int64)
        out[f"layer{i}_bias"] = l.bias.astype(np.int64)
    for j, f in enumerate(g.feedback):
        out[f"feedback{j}_weight"] = f.weight.astype(np.int64)
    return out


def write_bundle(g: Graph, out: Path, extra: Optional[dict] = None,
                 writers: Optional[dict] = None, force: bool = False) -> Path:
    """Write graph + extra manifest fields + extra files (name -> fn(path)) atomically to `out`
    (an existing `out` is replaced only with `force` and only if it is a saf bundle)."""
    out = Path(out)
    with Staged(out, (BUNDLE_DIR,), force=force) as tmp:
        np.savez(tmp / WEIGHTS, **_arrays(g))
        for name, fn in (writers or {}).items():
            fn(tmp / name)
        manifest = graph_manifest(g)
        manifest.update(extra or {})
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False))
    return out


def read_manifest(bundle: Path, check_hashes: bool = True) -> dict:
    bundle = Path(bundle)
    mpath = bundle / MANIFEST
    if not bundle.is_dir():
        raise BundleError(f"{bundle}: not a bundle directory")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing (not a saf bundle?)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{mpath}: format_version {manifest.get('format_version')!r}, "
                          f"this saf reads {FORMAT_VERSION}")
    if check_hashes:
        for name, digest in manifest.get("files", {}).items():
            p = bundle / name
            if not p.is_file():
                raise BundleError(f"{p}: listed in the manifest but missing")
            if sha256_file(p) != digest:
                raise BundleError(f"{p}: sha256 does not match the manifest (file modified or corrupt)")
    return manifest


def load_graph(bundle: Path, check_hashes: bool = True) -> Graph:
    bundle = Path(bundle)
    m = read_manifest(bundle, check_hashes)
    wpath = bundle / WEIGHTS
    try:
        with np.load(wpath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable npz is a bad bundle
        raise BundleError(f"{wpath}: cannot read weights ({e})") from None
    layers = []
    for i, lm in enumerate(m["layers"]):
        try:
            w, b = arrays[f"layer{i}_weight"], arrays[f"layer{i}_bias"]
        except KeyError as e:
            raise BundleError(f"{wpath}: missing array {e.args[0]}") from None
        if list(w.shape) != lm["weight_shape"]:
            raise BundleError(f"{wpath}: layer{i}_weight has shape {list(w.shape)}, manifest says {lm['weight_shape']}")
        layers.append(Layer(name=lm["name"], kind=lm["kind"], weight=w.astype(np.int64), bias=b.astype(np.int64),
                            in_shape=tuple(lm["in_shape"]), out_shape=tuple(lm["out_shape"]),
                            threshold=int(lm["threshold"]), stride=int(lm["stride"]), padding=int(lm["padding"]),
                            scale=float(lm["scale"]), frac_bits=int(lm["frac_bits"])))
    feedback = []
    for j, fm in enumerate(m.get("feedback", [])):
        key = f"feedback{j}_weight"
        if key not in arrays:
            raise BundleError(f"{wpath}: missing array {key}")
        feedback.append(Feedback(src=fm["src"], dst=fm["dst"], kind=fm["kind"], weight=arrays[key].astype(np.int64),
                                 stride=fm["stride"], padding=fm["padding"]))
    return Graph(layers=layers, T=int(m["T"]), lam=float(m["lam"]), decay=int(m["decay"]),
                 input_shape=tuple(m["input_shape"]), input_scale=float(m["input_scale"]),
                 input_bits=int(m["input_bits"]), input_signed=bool(m["input_signed"]),
                 feedback=feedback, target=m["target"], meta=m.get("meta", {}))
