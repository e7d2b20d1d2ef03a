"""Schema of manifest.json: every key the loader reads, with its type, checked before any is used,
so a missing or ill-typed key is one line naming the manifest and the key (never a KeyError).
Keys beyond these are allowed (the manifest's hash covers them all)."""
from __future__ import annotations

from pathlib import Path

from saf.hw_targets.words import WEIGHT_WORDS
from saf.core.neuron_modes import mode_problem

from saf.export.bundle.auth import MANIFEST_HASH_KEY
from saf.export.bundle.error import BundleError

INT, NUM, STR, BOOL, LIST, DICT = "an integer", "a number", "a string", "a boolean", "a list", "an object"
INTS = "a list of integers"

TOP = {"format_version": INT, "target": STR, "T": INT, "lam": NUM, "decay": INT, "input_shape": INTS,
       "input_scale": NUM, "input_bits": INT, "input_signed": BOOL, "layers": LIST, "feedback": LIST,
       "meta": DICT, "files": DICT, MANIFEST_HASH_KEY: STR}
LAYER = {"name": STR, "kind": STR, "in_shape": INTS, "out_shape": INTS, "threshold": INT, "stride": INT,
         "padding": INT, "scale": NUM, "frac_bits": INT, "weight_shape": INTS}
FEEDBACK = {"src": INT, "dst": INT, "kind": STR, "stride": INT, "padding": INT, "weight_shape": INTS}
LAYER_KINDS = ("dense", "conv", "readout")


def _is(v, kind: str) -> bool:
    if kind == INT:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == NUM:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == INTS:
        return isinstance(v, list) and all(_is(x, INT) for x in v)
    return isinstance(v, {STR: str, BOOL: bool, LIST: list, DICT: dict}[kind])


def _check(obj, schema: dict, mpath: Path, where: str) -> None:
    if not isinstance(obj, dict):
        raise BundleError(f"{mpath}: {where or 'the manifest'} must be a JSON object")
    for key, kind in schema.items():
        if key not in obj:
            old = " (written by an older saf without bundle authentication? re-export it)" \
                if key == MANIFEST_HASH_KEY else ""
            raise BundleError(f"{mpath}: missing key {where}{key!r}{old}")
        if not _is(obj[key], kind):
            raise BundleError(f"{mpath}: key {where}{key!r} must be {kind}, got {obj[key]!r:.60}")


def _require(ok: bool, mpath: Path, key: str, what: str) -> None:
    if not ok:
        raise BundleError(f"{mpath}: key {key} {what}")


def validate_manifest(m, mpath: Path) -> None:
    """Raise BundleError naming the manifest and the first bad key."""
    _check(m, TOP, mpath, "")
    _require(isinstance(m.get("input_time_varying", False), bool), mpath, "'input_time_varying'",
             "must be a boolean (omitted: constant input)")
    _require(m["T"] >= 1, mpath, "'T'", f"must be >= 1, got {m['T']}")
    _require(0 <= m["decay"] < 4096, mpath, "'decay'", f"must be in [0, 4095], got {m['decay']}")
    _require(1 <= m["input_bits"] <= 32, mpath, "'input_bits'", f"must be in [1, 32], got {m['input_bits']}")
    _require(m["input_scale"] > 0, mpath, "'input_scale'", f"must be > 0, got {m['input_scale']}")
    _require(len(m["layers"]) >= 2, mpath, "'layers'", "must hold at least one spiking layer and the readout")
    for i, lm in enumerate(m["layers"]):
        _check(lm, LAYER, mpath, f"layers[{i}].")
        _require(lm["kind"] in LAYER_KINDS, mpath, f"layers[{i}].'kind'", f"must be one of {LAYER_KINDS}")
        _require(lm["frac_bits"] >= 0 and lm["stride"] >= 1 and lm["padding"] >= 0, mpath, f"layers[{i}]",
                 "needs frac_bits >= 0, stride >= 1, padding >= 0")
        if "v0" in lm:                 # optional initial potential (omitted or 0 = none)
            _require(_is(lm["v0"], INT) and lm["kind"] != "readout" and abs(lm["v0"]) < (1 << 23), mpath,
                     f"layers[{i}].'v0'", f"must be an integer of |v0| < 2^23 on a spiking layer, got {lm['v0']!r:.40}")
        if "du" in lm:                 # optional current decay of a two-state layer (omitted: 4095, none)
            _require(_is(lm["du"], INT) and lm["kind"] != "readout" and 0 <= lm["du"] <= 4095, mpath,
                     f"layers[{i}].'du'", f"must be an integer in [0, 4095] on a spiking layer, got {lm['du']!r:.40}")
        if "u0" in lm:                 # optional initial current of a two-state layer (weights.npz layer{i}_u0)
            _require(lm["u0"] is True and "du" in lm, mpath, f"layers[{i}].'u0'",
                     f"must be true, on a two-state layer (one with 'du'), got {lm['u0']!r:.40}")
        if "first_spike" in lm:        # optional first-spike readout (FP)
            _require(isinstance(lm["first_spike"], bool) and lm["kind"] == "readout", mpath,
                     f"layers[{i}].'first_spike'", "must be a boolean on the readout layer")
        if "weight_words" in lm:       # optional synapse words per weight (omitted: 1)
            _require(_is(lm["weight_words"], INT) and lm["weight_words"] in WEIGHT_WORDS, mpath,
                     f"layers[{i}].'weight_words'", f"must be one of {WEIGHT_WORDS}, got {lm['weight_words']!r:.40}")
        for key in ("reset", "compare"):   # optional per-layer modes (omitted: subtract, >=)
            if key in lm:
                problem = mode_problem(lm[key], key)
                _require(not problem and lm["kind"] != "readout", mpath, f"layers[{i}].'{key}'",
                         problem or "belongs on a spiking layer, not the readout")
    for j, fm in enumerate(m["feedback"]):
        _check(fm, FEEDBACK, mpath, f"feedback[{j}].")
    for name, digest in m["files"].items():
        _require(isinstance(digest, str) and len(digest) == 64, mpath, f"files[{name!r}]", "must be a sha256 hex")
        _require("/" not in name and "\\" not in name and name not in ("", ".", ".."), mpath, f"files[{name!r}]",
                 "must name a file inside the bundle")
