"""`saf verify` on a bundle folder, as one library call: the backends planned (deploy/verify/plan.py), the
inputs chosen (inputs.py), the options checked once (deploy/verify/options.py) and the run verified
(deploy/verify/core.py). The CLI parses, calls verify_bundle and prints."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from saf.deploy.backends.registry import LAVA_BACKENDS, Bundle, require_lava
from saf.deploy.verify.inputs import choose_inputs
from saf.deploy.verify import VerifyReport, verify
from saf.deploy.verify.options import VerifyOptions
from saf.deploy.verify.plan import DEFAULT_BACKENDS, plan_backends


@dataclass(frozen=True)
class InputChoice:
    inputs: Optional[str] = None       # a .npy of quantized inputs (replaces the dataset)
    data: Optional[str] = None         # a dataset name (default: the one the bundle was trained on)
    data_root: Optional[str] = None
    limit: Optional[int] = None        # the first `limit` test samples


def verify_bundle(path, backends: Optional[list], source: InputChoice, options: VerifyOptions) -> VerifyReport:
    """The report of verifying the bundle at `path` on `source`'s inputs; backends None: the default list
    and its policy (the report's notes say what it changed)."""
    if LAVA_BACKENDS & set(backends if backends is not None else DEFAULT_BACKENDS):
        require_lava("--backends")
    b = Bundle.load(path)
    specs, notes = plan_backends(b, backends)
    xq, y, name, fp_times = choose_inputs(b, source.inputs, source.data, source.data_root, source.limit)
    rep = verify(b, xq, y, specs, replace(options, dataset=name), fp_times=fp_times)
    rep.notes = notes
    return rep
