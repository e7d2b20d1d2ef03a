"""The graph metadata `saf` of a NIR file this toolchain wrote (from_run.py, fp.py): parsed once per import
(entry.import_nir), each value saf reads checked against what it may be, refused in one line naming the file."""
from __future__ import annotations

import json
import math

from saf.export.nir.conventions import COMPARE_OF_FLAG, CURRENT_ORDERS, FORMAT, SAF_META
from saf.export.nir.errors import NirError
from saf.export.nir.graph import Chain
from saf.core.neuron_modes import RESETS


def saf_meta(ch: Chain) -> dict:
    """The graph metadata `saf` of a file saf export wrote (from_run.py), {} for any other."""
    if SAF_META not in ch.metadata:
        return {}
    try:
        meta = json.loads(str(ch.metadata[SAF_META]))
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise NirError(f"{ch.path}: graph metadata '{SAF_META}' is not a JSON object")
    for key, v in meta.items():
        allowed = _meta_problem(key, v)
        if allowed:
            raise NirError(f"{ch.path}: graph metadata '{SAF_META}' key '{key}' is {v!r}; allowed: {allowed}")
    return meta


def _meta_problem(key: str, v) -> str:
    """'' when value `v` of saf metadata key `key` (from_run.py, fp.py) is one saf reads, else the allowed values.
    The entries dsr.py and fp.py read whole (dsr, fp_params, fp_code, discrete, config) are checked there."""
    from saf.train.data.encoders import ENCODERS
    from saf.train.data.registry import DATASETS
    from saf.train.methods.registry import CONTINUOUS_METHODS, METHODS
    from saf.train.readout import READOUTS as RUN_READOUTS

    num = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    words = {"reset": RESETS, "compare": tuple(COMPARE_OF_FLAG), "encoder": ENCODERS, "readout": tuple(RUN_READOUTS),
             "current_order": CURRENT_ORDERS, "dataset": DATASETS, "method": METHODS + CONTINUOUS_METHODS}
    if key in words:
        optional = key in ("dataset", "method")          # from_run.py writes the run config's, which may be None
        ok = v in words[key] or (optional and v is None)
        return "" if ok else ", ".join(words[key]) + (" or null" if optional else "")
    checks = {"format": (v == FORMAT, repr(FORMAT)), "dt": (num and v > 0, "a positive finite number"),
              "T": (num and isinstance(v, int) and v >= 1, "an integer >= 1"),
              "lam": (num and 0 < v <= 1, "a number in (0, 1]"), "theta": (num and v > 0, "a positive number")}
    ok, allowed = checks.get(key, (True, ""))
    return "" if ok else allowed
