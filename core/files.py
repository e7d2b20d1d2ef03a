"""File helpers every package uses: atomic replacement, streaming sha256, a safetensors header read
without its tensors, and the process umask. Stdlib only."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then rename into place, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())          # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def header_metadata(path) -> dict:
    """The safetensors header's __metadata__ of `path` (or of the file's bytes, already read), no tensors
    read (OSError / ValueError / struct.error for a file that is not safetensors)."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        data = bytes(path)
        n = struct.unpack("<Q", data[:8])[0]
        if not 2 <= n <= min(100_000_000, len(data) - 8):
            raise ValueError("bad safetensors header length")
        return json.loads(data[8:8 + n]).get("__metadata__") or {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if not 2 <= n <= 100_000_000:
            raise ValueError("bad safetensors header length")
        return json.loads(f.read(n)).get("__metadata__") or {}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
