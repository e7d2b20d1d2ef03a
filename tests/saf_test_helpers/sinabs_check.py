"""A Sinabs-written NIR file (tests/sinabs_suite/sinabs_cnn.py, run in .venv-sinabs) against saf, in saf's environment:
`saf import` -> the imported float LIF form's spikes of every layer vs Sinabs' own (sinabs.npz), `saf export --target
loihi` and `--target onnx` -> the deployed integer network's spikes (emulator) vs Sinabs', `saf verify`.

Used by tests/test_nir_sinabs.py on the committed fixture (tests/golden/sinabs-cnn) and, as a command, by the Sinabs
suite (tests/sinabs_suite/suite.py) on a file Sinabs writes in that run:
    python tests/saf_test_helpers/sinabs_check.py DIR/cnn.nir DIR/sinabs.npz --work WORKDIR [--import-flags "..."] [--float-only]
prints one JSON object (the comparison) and exits 0 when every count is 0 and verify passed, 1 otherwise.

The exact comparisons are sound: the fixture's weights are multiples of 2^-g and its inputs multiples of 1/16, so
Sinabs' float32 sums and saf's float64 ones are exact (sinabs_cnn.py's docstring)."""
from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

SINABS_FLAGS = ["--reset", "subtract", "--compare", "ge"]   # Sinabs' IAF: MembraneSubtract, SingleSpike fires at v >= 1
VERIFY_BACKENDS = "saf-int,emulator,onnx,lava-own"          # lava-own: stock Lava's LIF resets to 0 and fires at v > th


def _saf(args: list) -> tuple:
    """(exit code, stdout) of the saf CLI run in this process."""
    from saf.deploy.main import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main([str(a) for a in args])
    return rc, buf.getvalue()


def sinabs_spikes(npz) -> tuple:
    """(inputs [N, 1, 8, 8], labels, Sinabs' spikes per IAF layer [N, T, n], C order as saf records them)."""
    d = np.load(npz)
    n = sum(1 for k in d.files if k.startswith("spikes"))
    return d["x"], d["y"], [d[f"spikes{i}"].reshape(*d[f"spikes{i}"].shape[:2], -1) for i in range(n)]


def float_spikes(run_dir, x: np.ndarray) -> list:
    """The imported run's float LIF form in float64: its spikes per spiking layer, [N, T, n]."""
    import torch

    from saf.train.checkpoint import load_model

    net, spec, _ = load_model(run_dir)
    _, recs = net.double().infer(torch.from_numpy(x).double(), int(spec["T"]), "lif", record=True)
    return [torch.stack([r.spikes[l] for r in recs], 1).reshape(len(x), int(spec["T"]), -1).numpy()
            for l in range(net.n_spiking)]


def deployed_spikes(bundle, x: np.ndarray) -> list:
    """The deployed integer network's spikes per layer (the emulator, bit-accurate to Loihi's arithmetic)."""
    from saf.deploy.backends.registry import Bundle, run_backend

    b = Bundle.load(bundle)
    return [np.asarray(s) for s in run_backend("emulator", b, b.graph.quantize_input(x), record_spikes=True).spikes]


def mismatches(ref: list, got: list) -> list:
    """Per layer: cells (sample, step, neuron) where the two disagree; a layer count or shape that differs is a
    failure too (-1), never a silent zip over fewer layers."""
    if len(ref) != len(got):
        return [-1]
    return [int((r != (g > 0.5)).sum()) if r.shape == g.shape else -1 for r, g in zip(ref, got)]


def check(nir_file, npz, work, import_flags=None, float_only: bool = False) -> dict:
    """Import, compare, deploy (loihi and onnx), compare, verify; a dict of what each step gave (float_only: stop
    after the float form's comparison, which then does not pass)."""
    work = Path(work)
    flags = SINABS_FLAGS if import_flags is None else import_flags
    x, _, ref = sinabs_spikes(npz)
    out = {"sinabs_spikes": [int(r.sum()) for r in ref]}
    rc, text = _saf(["import", nir_file, "--out", work / "run", *flags])
    out["import"] = rc
    if rc:
        return out
    out["float_mismatches"] = mismatches(ref, float_spikes(work / "run", x))
    if float_only:
        return out
    for target in ("loihi", "onnx"):
        rc, text = _saf(["export", work / "run", "--target", target, "--calibrate-data", "digits",
                         "--out", work / target])
        out[f"export_{target}"] = rc
        if rc:
            return out
        out[f"exact_{target}"] = json.loads((work / target / "manifest.json").read_text())["certificate"]["exact"]
    out["deployed_mismatches"] = mismatches(ref, deployed_spikes(work / "loihi", x))
    rc, text = _saf(["verify", work / "loihi", "--backends", VERIFY_BACKENDS, "--lava-limit", "10"])
    out["verify"] = rc
    out["verify_pass"] = "verify: PASS" in text
    out["verify_zero_lines"] = text.count(": 0 mismatching spikes")
    rc, text = _saf(["verify", work / "onnx", "--backends", "saf-int,emulator,onnx"])
    out["verify_onnx"] = rc
    return out


def passed(r: dict) -> bool:
    """Every step ran, both bundles EXACT, 0 mismatching spikes in every layer (float and deployed), verify PASS."""
    return (r.get("import") == 0 and r.get("export_loihi") == 0 and r.get("export_onnx") == 0
            and r.get("exact_loihi") is True and r.get("exact_onnx") is True
            and r.get("float_mismatches") == [0] * len(r["sinabs_spikes"])
            and r.get("deployed_mismatches") == [0] * len(r["sinabs_spikes"])
            and r.get("verify") == 0 and r.get("verify_pass") is True and r.get("verify_onnx") == 0)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("nir_file")
    p.add_argument("npz")
    p.add_argument("--work", required=True)
    p.add_argument("--import-flags", default=None, help="saf import flags instead of Sinabs' (a fault to show)")
    p.add_argument("--float-only", action="store_true", help="stop after the float form's comparison (exit 1)")
    a = p.parse_args()
    res = check(a.nir_file, a.npz, a.work, None if a.import_flags is None else a.import_flags.split(), a.float_only)
    print(json.dumps(res))
    sys.exit(0 if passed(res) else 1)
