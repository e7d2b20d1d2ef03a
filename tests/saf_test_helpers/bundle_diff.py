"""What differs between two bundles of the same network, provenance aside (the NIR round-trip tests)."""
from __future__ import annotations

import json

PROVENANCE = ("meta", "manifest_sha256")         # who made the bundle from what; every other key must agree


def bundle_differences(a, b) -> list:
    """Manifest keys, manifest file entries (the copied source checkpoint aside) and bundle files
    (weights.npz, model.onnx, compared byte for byte) that differ between bundle directories a and b."""
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    diff = [k for k in sorted(set(ma) | set(mb)) if k not in PROVENANCE + ("files",) and ma.get(k) != mb.get(k)]
    diff += [f"files.{f}" for f in sorted(set(ma["files"]) | set(mb["files"]))
             if f != "source.safetensors" and ma["files"].get(f) != mb["files"].get(f)]
    diff += [f for f in ("weights.npz", "model.onnx") if (a / f).read_bytes() != (b / f).read_bytes()]
    return diff
