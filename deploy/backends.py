"""One interface over every inference backend: run(bundle, xq) -> BackendResult.

  lava       the bundle's Lava process graph on Loihi2SimCfg(select_tag="fixed_pt")
  onnx       onnxruntime on the bundle's model.onnx
  emulator   the fast bit-accurate numpy emulator of the integer LIF form
  saf-int    the SAF accumulation (training) form on the integer weights, exact arithmetic
  saf-float  the trained float model (the bundle's source.safetensors), SAF form
  lif-float  the trained float model, LIF form (the PyTorch LIF model)

Fault injection (FAULTS) turns the emulator into a deliberately wrong backend, so the verifier's
own tests (and `saf verify --inject-fault`) show that every kind of conversion error is caught.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from saf.export.bundle import ONNX_FILE, SOURCE_FILE, BundleError, load_graph, read_manifest
from saf.export.ir import Graph

from .result import BackendResult

INTEGER_BACKENDS = ("saf-int", "emulator", "onnx", "lava")
FLOAT_BACKENDS = ("saf-float", "lif-float")
BACKENDS = INTEGER_BACKENDS + FLOAT_BACKENDS
LIF_FORM = ("emulator", "onnx", "lava")          # integer LIF implementations: always bit-identical
FAULTS = {
    "lsb": "one weight of the first layer changed by one LSB",
    "tie": "strict threshold comparison V > TH<<F (Lava's stock LIF) instead of >=",
    "hard-reset": "hard reset V' = 0 instead of subtractive",
    "delay": "Lava's one-step synaptic delay left uncompensated on every feed-forward connection",
}


class BackendError(ValueError):
    """A backend cannot run on this bundle (one clear line)."""


@dataclass
class Bundle:
    path: Optional[Path]
    manifest: dict
    graph: Graph
    cache: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path) -> "Bundle":
        path = Path(path)
        return cls(path, read_manifest(path), load_graph(path))

    @property
    def dataset(self) -> Optional[str]:
        return (self.manifest.get("meta", {}).get("train_config") or {}).get("dataset")


def require_lava(flag: str) -> None:
    """Fail up front, in one line, when the Lava backend cannot be imported here (lava-nc 0.10.0
    needs Python 3.10), instead of after every other backend has run."""
    try:
        import saf.deploy.lava_backend  # noqa: F401 - imports lava
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and not (e.name or "lava").startswith("lava"):
            raise                                     # one of ours is missing: a bug, not the user's
        raise BackendError(f"{flag}: the lava backend cannot run on this Python ({type(e).__name__}: {e}); "
                           f"install lava-nc 0.10.0 (Python 3.10) or use the other backends "
                           f"(saf-int, emulator, onnx)") from None


def inject_fault(graph: Graph, fault: str) -> tuple:
    """(graph for the faulty backend, emulate() keyword options) for one fault name."""
    if fault not in FAULTS:
        raise BackendError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
    if fault == "lsb":
        g = copy.deepcopy(graph)
        w = g.layers[0].weight
        flat = np.abs(w).reshape(-1)
        idx = np.unravel_index(int(np.argmax(flat)), w.shape)
        w[idx] += -1 if w[idx] > 0 else 1          # one LSB towards zero (stays in range)
        return g, {}
    opts = {"tie": {"tie": "gt"}, "hard-reset": {"reset": "zero"}, "delay": {"feedforward_delay": 1}}[fault]
    return graph, opts


def _float_model(bundle: Bundle):
    from saf.train.checkpoint import load_model

    if bundle.path is None or not (bundle.path / SOURCE_FILE).is_file():
        raise BackendError(f"{bundle.path}: no {SOURCE_FILE} in the bundle (exported from a random model?); "
                           f"float backends need the trained weights")
    net, spec, _ = load_model(bundle.path / SOURCE_FILE)
    return net.double()


def _run_float(bundle: Bundle, xq: np.ndarray, form: str, record_spikes: bool) -> BackendResult:
    import time

    import torch

    t0 = time.perf_counter()
    net = _float_model(bundle)
    g = bundle.graph
    x = torch.from_numpy(np.asarray(xq, np.float64) / g.input_scale)
    readouts, spikes = [], [[] for _ in range(net.n_spiking)]
    for i in range(0, len(x), 256):
        total, recs = net.infer(x[i:i + 256], g.T, form, record=record_spikes)
        readouts.append(total.numpy())
        if record_spikes:
            for l in range(net.n_spiking):
                spikes[l].append(np.stack([r.spikes[l].flatten(1).numpy() > 0.5 for r in recs], axis=1))
    sp = [np.concatenate(s) for s in spikes] if record_spikes else None
    return BackendResult(backend=f"{form}-float", readout=np.concatenate(readouts), spikes=sp,
                         seconds=time.perf_counter() - t0, info={"dtype": "float64"})


def run_backend(name: str, bundle: Bundle, xq: np.ndarray, record_spikes: bool = True,
                progress: bool = False, fault: Optional[str] = None, graph: Optional[Graph] = None,
                **opts) -> BackendResult:
    """Run backend `name` on quantized inputs xq [N, *input_shape]. `fault` (emulator only) injects
    one of FAULTS; `graph` overrides the bundle's graph (tests)."""
    g = graph if graph is not None else bundle.graph
    if fault is not None:
        if name != "emulator":
            raise BackendError(f"faults are injected into the emulator backend, not {name}")
        from .emulator import emulate

        g, fopts = inject_fault(g, fault)
        r = emulate(g, xq, record_spikes=record_spikes, **fopts)
        r.backend = f"emulator[{fault}]"
        return r
    if name == "saf-int":
        from saf.export.saf_int import run_saf_int
        return run_saf_int(g, xq, record_spikes=record_spikes)
    if name == "emulator":
        from .emulator import _Plan, emulate
        plan = bundle.cache.get("emulator_plan") if graph is None else None
        if plan is None:                       # unrolled synapses: built once per bundle
            plan = _Plan(g, 0)
            if graph is None:
                bundle.cache["emulator_plan"] = plan
        return emulate(g, xq, record_spikes=record_spikes, plan=plan)
    if name == "onnx":
        from .onnx_runner import run_onnx
        if bundle.path is None or not (bundle.path / ONNX_FILE).is_file():
            raise BundleError(f"{bundle.path}: no {ONNX_FILE} in the bundle")
        return run_onnx(str(bundle.path / ONNX_FILE), g, xq, record_spikes=record_spikes, progress=progress,
                        **opts)
    if name == "lava":
        from .lava_backend import run_lava
        return run_lava(g, xq, record_spikes=record_spikes, progress=progress, **opts)
    if name in FLOAT_BACKENDS:
        return _run_float(bundle, xq, name.split("-")[0], record_spikes)
    raise BackendError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


def potentials_for(name: str, bundle: Bundle, xq_one: np.ndarray, fault: Optional[str] = None) -> tuple:
    """(label, potentials per layer [1, T, n]) for one sample: the backend's own where it can report
    them (emulator, saf-int), else the correct emulator's (the LIF form all LIF backends implement)."""
    g = bundle.graph
    if name == "saf-int":
        from saf.export.saf_int import run_saf_int
        return "saf-int u", run_saf_int(g, xq_one, record_potentials=True).potentials
    from .emulator import emulate
    if name == "emulator" and fault:
        g2, fopts = inject_fault(g, fault)
        return f"emulator[{fault}] V", emulate(g2, xq_one, record_potentials=True, **fopts).potentials
    label = "V" if name == "emulator" else "V (emulator)"
    return label, emulate(g, xq_one, record_potentials=True).potentials
