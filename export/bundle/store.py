"""Bundle on disk: one directory with manifest.json, weights.npz and model.onnx.

Written to a temporary sibling directory and swapped into place only when complete (core/outdir.py),
so a failed export leaves nothing behind and `--force` replaces only a saf bundle. Authenticated
(export/bundle/auth.py): every file's sha256 and the manifest's own canonical digest are in the
manifest; loading checks the schema (export/bundle/manifest.py), the manifest digest and every file,
and refuses missing or extra files.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Optional

import numpy as np

from saf.core.outdir import OutputKind, Staged

from saf.export.bundle.auth import check_files, check_manifest, seal
from saf.export.bundle.error import BundleError
from saf.core.neuron_modes import DEFAULT_COMPARE, DEFAULT_RESET

from saf.export.ir import DU_NONE, Feedback, Graph, Layer
from saf.export.bundle.manifest import validate_manifest

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
ONNX_FILE = "model.onnx"
SOURCE_FILE = "source.safetensors"     # the trained float checkpoint, copied
FP_SOURCE_FILE = "fp-model.safetensors"   # an FP checkpoint (continuous-time weights), copied
NETX_SOURCE_FILE = "source.net"          # an imported lava-dl netx file, copied (export/netx/run_dir.py)


def _is_saf_manifest(path: Path) -> bool:
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "format_version" in m and isinstance(m.get("files"), dict)


# A bundle directory: what `saf export --force` may replace (core/outdir.py).
BUNDLE_DIR = OutputKind("saf bundle", MANIFEST, _is_saf_manifest, (MANIFEST, WEIGHTS, ONNX_FILE, SOURCE_FILE,
                                                                       FP_SOURCE_FILE, NETX_SOURCE_FILE))


def _layer_meta(l: Layer) -> dict:
    d = {"name": l.name, "kind": l.kind, "in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
         "threshold": int(l.threshold), "stride": l.stride, "padding": l.padding,
         "scale": float(l.scale), "frac_bits": int(l.frac_bits),
         "weight_shape": list(l.weight.shape)}
    if l.spiking and int(l.v0):
        d["v0"] = int(l.v0)                # initial potential V'[0] (<< F); omitted when 0
    if not l.spiking:
        d["decay"] = int(l.decay)          # the readout's leak, 12-bit D (0 for none)
    if int(l.in_pool) > 1:
        d["in_pool"] = int(l.in_pool)      # k x k sum pool in front of the weight; omitted when 1
    if l.spiking and int(l.du) != DU_NONE:
        d["du"] = int(l.du)                # two-state layer: 12-bit current decay; omitted at 4095 (none)
    if l.spiking and l.has_initial_current:
        d["u0"] = True                     # initial current U[0] in weights.npz layer{i}_u0; omitted when none
    if not l.spiking and l.first_spike:
        d["first_spike"] = True            # first-spike readout (FP); omitted when False
    if l.spiking and l.reset != DEFAULT_RESET:
        d["reset"] = l.reset               # per-layer reset mode (core/neuron_modes.py); omitted at the default
    if l.spiking and l.compare != DEFAULT_COMPARE:
        d["compare"] = l.compare           # per-layer compare; omitted at the default (>=)
    if int(l.weight_words) != 1:
        d["weight_words"] = int(l.weight_words)   # synapse words per weight (hw_targets/words.py); omitted at 1
    return d


def _readout_decay(lm: dict, decay: int, where: Path) -> int:
    """The readout's leak D_r. A manifest written before readouts could leak has no "decay": its
    readout is the non-leaking sum (D_r = 0)."""
    d = int(lm.get("decay", 0))
    if d not in (0, int(decay)):
        raise BundleError(f"{where}: readout decay {d} must be 0 or the network's decay {decay}")
    return d


def _in_pool(lm: dict, where: Path) -> int:
    """The layer's sum-pool size k (1: none, as in every manifest written before sum pooling)."""
    k = lm.get("in_pool", 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise BundleError(f"{where}: layer {lm.get('name')!r}: in_pool must be a positive integer, got {k!r}")
    if k > 1:
        shape = lm["in_shape"]
        if len(shape) != 3 or shape[1] % k or shape[2] % k:
            raise BundleError(f"{where}: layer {lm.get('name')!r}: in_pool {k} does not divide its input {shape}")
    return k


def _initial_current(lm: dict, arrays: dict, i: int, bias: np.ndarray, wpath: Path) -> Optional[np.ndarray]:
    """Layer i's initial current U[0] (Layer.u0) when the manifest says it has one, else None."""
    key = f"layer{i}_u0"
    if not lm.get("u0", False):
        if key in arrays:
            raise BundleError(f"{wpath}: {key} present but the manifest's layer {lm['name']!r} has no 'u0'")
        return None
    if key not in arrays:
        raise BundleError(f"{wpath}: missing array {key} (the manifest's layer {lm['name']!r} has 'u0')")
    u = arrays[key]
    if u.shape != bias.shape:
        raise BundleError(f"{wpath}: {key} has shape {list(u.shape)}, expected the bias's {list(bias.shape)}")
    return u.astype(np.int64)


def graph_manifest(g: Graph) -> dict:
    m = {
        "format_version": FORMAT_VERSION,
        "target": g.target, "T": g.T, "lam": g.lam, "decay": g.decay,
        "input_shape": list(g.input_shape), "input_scale": g.input_scale,
        "input_bits": g.input_bits, "input_signed": g.input_signed,
        "layers": [_layer_meta(l) for l in g.layers],
        "feedback": [{"src": f.src, "dst": f.dst, "kind": f.kind, "stride": f.stride,
                      "padding": f.padding, "weight_shape": list(f.weight.shape)} for f in g.feedback],
        "meta": g.meta,
    }
    if g.input_time_varying:          # omitted when False: constant-input bundles stay byte-identical
        m["input_time_varying"] = True
    return m


def _arrays(g: Graph) -> dict:
    out = {}
    for i, l in enumerate(g.layers):
        out[f"layer{i}_weight"] = l.weight.astype(np.int64)
        out[f"layer{i}_bias"] = l.bias.astype(np.int64)
        if l.spiking and l.has_initial_current:
            out[f"layer{i}_u0"] = np.asarray(l.u0, dtype=np.int64)
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
        manifest = seal(manifest, tmp, MANIFEST)         # every file's sha256 + the manifest's own
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False))
    return out


def read_manifest(bundle: Path) -> dict:
    """The manifest, after its schema, its own digest and every file's sha256 are checked."""
    return read_bundle(bundle)[0]


def read_bundle(bundle: Path) -> tuple:
    """(manifest, {file name: bytes}) after the schema, the manifest's digest and every file's sha256 are
    checked: each file is read once, and the bytes returned are the bytes that were hashed."""
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
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: must be a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{mpath}: format_version {manifest.get('format_version')!r}, "
                          f"this saf reads {FORMAT_VERSION}")
    validate_manifest(manifest, mpath)
    check_manifest(manifest, mpath)
    return manifest, check_files(bundle, manifest, MANIFEST)


def load_graph(bundle: Path, manifest: Optional[dict] = None, files: Optional[dict] = None) -> Graph:
    """The bundle's graph; from (manifest, files) of read_bundle when given, so weights.npz is parsed
    from the bytes that were hashed, else after reading and checking the bundle itself."""
    bundle = Path(bundle)
    m, files = (manifest, files) if manifest is not None and files is not None else read_bundle(bundle)
    wpath = bundle / WEIGHTS
    if WEIGHTS not in files:
        raise BundleError(f"{wpath}: not listed in the manifest")
    try:
        with np.load(io.BytesIO(files[WEIGHTS]), allow_pickle=False) as z:
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
        if b.ndim != 1 or len(b) != w.shape[0]:
            raise BundleError(f"{wpath}: layer{i}_bias has shape {list(b.shape)}, expected [{w.shape[0]}]")
        decay = _readout_decay(lm, m["decay"], bundle / MANIFEST) if lm["kind"] == "readout" else 0
        u0 = _initial_current(lm, arrays, i, b, wpath)
        layers.append(Layer(name=lm["name"], kind=lm["kind"], weight=w.astype(np.int64), bias=b.astype(np.int64),
                            in_shape=tuple(lm["in_shape"]), out_shape=tuple(lm["out_shape"]),
                            threshold=int(lm["threshold"]), stride=int(lm["stride"]), padding=int(lm["padding"]),
                            scale=float(lm["scale"]), frac_bits=int(lm["frac_bits"]), decay=decay,
                            v0=int(lm.get("v0", 0)) if lm["kind"] != "readout" else 0,
                            in_pool=_in_pool(lm, bundle / MANIFEST),
                            du=int(lm.get("du", DU_NONE)) if lm["kind"] != "readout" else DU_NONE, u0=u0,
                            first_spike=bool(lm.get("first_spike", False)) and lm["kind"] == "readout",
                            reset=lm.get("reset", DEFAULT_RESET), compare=lm.get("compare", DEFAULT_COMPARE),
                            weight_words=int(lm.get("weight_words", 1))))
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
                 feedback=feedback, target=m["target"], meta=m.get("meta", {}),
                 input_time_varying=bool(m.get("input_time_varying", False)))
