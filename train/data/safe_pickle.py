"""Unpickling of untrusted files that may hold only plain containers and numpy arrays.

`pickle.load` on a user's file can run arbitrary code: every global a pickle names is looked up
through `Unpickler.find_class` and may then be called. This unpickler resolves only the few
globals a numpy array needs (`_reconstruct`, `ndarray`, `dtype`, under numpy 1 or numpy 2 module
names) and, for pickles written by Python 3 at protocol < 3, `_codecs.encode` restricted to
latin-1 (how such pickles spell a bytes object). Anything else is refused before it is resolved,
so nothing from the file is ever imported or called.
"""
from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from saf.core.errors import SafError

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's own _reconstruct, whatever its module


def _latin1_encode(text, encoding="latin1", errors="strict"):
    try:
        latin1 = isinstance(encoding, str) and codecs.lookup(encoding).name == "iso8859-1"
    except LookupError:
        latin1 = False
    if not (isinstance(text, str) and latin1 and errors == "strict"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as a latin-1 bytes literal")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "dtype"): np.dtype,
    ("numpy._core.multiarray", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RefusedGlobal(SafError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        super().__init__(f"refused global {module}.{name}")
        self.module = module
        self.name = name


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(data: bytes, encoding: str = "bytes"):
    """Unpickle `data` allowing only builtin containers/scalars and numpy arrays.

    encoding="bytes" reads Python 2 `str` objects as bytes (how CIFAR-10's batches must be read).
    Raises pickle.UnpicklingError (RefusedGlobal for a forbidden global) or the ordinary errors
    a malformed stream produces (EOFError, ValueError, ...).
    """
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
