"""Bundle authentication: sha256 over every file AND over the manifest's own canonical content.

The manifest lists each file's sha256 under "files" and carries MANIFEST_HASH_KEY, the sha256 of
its canonical JSON (sorted keys, no whitespace) with that one key left out. So a changed threshold,
T, decay or input scale, a deleted "files" key, a replaced weights file whose hash was updated in
"files", a missing or an extra file: each is refused on load, with one line naming the file.

This protects against accidental and casual edits (a hand-tuned threshold, a copied-in weights
file, a truncated download). It is not a signature: anyone who rewrites the manifest can recompute
its hash, so it does not protect against a deliberate forger.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from saf.core.files import file_sha256

from saf.export.bundle.error import BundleError

MANIFEST_HASH_KEY = "manifest_sha256"


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, MANIFEST_HASH_KEY excluded."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_HASH_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def seal(manifest: dict, directory: Path, manifest_name: str) -> dict:
    """The manifest as it will be read back (JSON round trip), with every file of `directory` but the
    manifest itself hashed under "files" and the manifest's own digest added."""
    m = dict(manifest)
    m["files"] = {p.name: file_sha256(p) for p in sorted(Path(directory).iterdir()) if p.name != manifest_name}
    m = json.loads(json.dumps(m))
    m[MANIFEST_HASH_KEY] = manifest_digest(m)
    return m


def check_manifest(manifest: dict, mpath: Path) -> None:
    """The manifest's content matches its stored digest."""
    if manifest_digest(manifest) != manifest[MANIFEST_HASH_KEY]:
        raise BundleError(f"{mpath}: content does not match its {MANIFEST_HASH_KEY} (a field was edited, added "
                          f"or removed after export; re-export the bundle)")


def check_files(bundle: Path, manifest: dict, manifest_name: str) -> dict:
    """Exactly the listed files are present, each with its listed sha256. Returns {name: bytes}: each
    file read once, hashed from those bytes, which are what the caller then parses or runs (no second
    read between the check and the use)."""
    listed = manifest["files"]
    present = {p.name for p in Path(bundle).iterdir() if p.name != manifest_name}
    for name in sorted(present - set(listed)):
        raise BundleError(f"{Path(bundle) / name}: not listed in the manifest (extra file in the bundle)")
    out = {}
    for name, digest in listed.items():
        p = Path(bundle) / name
        if not p.is_file():
            raise BundleError(f"{p}: listed in the manifest but missing")
        data = p.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(f"{p}: sha256 does not match the manifest (file modified or corrupt)")
        out[name] = data
    return out
