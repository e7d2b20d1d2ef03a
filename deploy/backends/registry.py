"""Every inference backend as a typed record (deploy/backends/spec.py), and one entry point:
run_backend(name, bundle, xq) -> BackendResult.

  saf-int    the SAF accumulation (training) form on the integer weights, exact arithmetic
  emulator   the fast bit-accurate numpy emulator of the integer LIF form
  onnx       onnxruntime's CPU provider on the bundle's model.onnx (covered by the certificate)
  onnx-cuda  the same model on onnxruntime's CUDA provider: NOT covered by the certificate (cuDNN may
             pick FFT/Winograd or TF32); compared like every backend, against the mismatch bound
  lava       simulated Loihi: the network on Lava's stock Dense/Conv/LIFReset fixed-point models
             (deploy/lava/stock.py; LIFReset's compare and reset overridden), Loihi2SimCfg fixed_pt
             (slow: a subset). Refuses, in one line naming lava-own, what the stock models cannot
             hold (F > 6, feedback, v0, register limits incl. its 24-bit current register u)
  lava-own   the toolchain's own Lava Processes (deploy/lava/backend.py, graph.py, procs/): a
             transcription of the IR's arithmetic, not Lava's Loihi models; runs every network
  netx       lava-dl's own netx loader and Lava's stock LIF (deploy/backends/netx_backend.py)
  saf-float  the trained float model (the bundle's source.safetensors), SAF form
  lif-float  the trained float model, LIF form (the PyTorch LIF model)
  trained    a grid-trained run's own torch forward (deploy/backends/trained.py), compared spike for spike

Fault injection (FAULTS) makes a deliberately wrong emulator backend (fault_backend), so the
verifier's own tests (and `saf verify --inject-fault`) show each kind of conversion error is caught.
A faulty backend declares the correct modes: its fault is a bug, which the comparison must find.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from saf.export.bundle.store import ONNX_FILE, SOURCE_FILE, WEIGHTS, BundleError, load_graph, read_bundle
from saf.export.ir import Graph
from saf.export.proof.onnx_exact import MODES as ONNX_MODES
from saf.export.proof.saf_int import MODES as SAF_INT_MODES
from saf.export.proof.certificate import current_register_check

from saf.deploy.backends.spec import (BACKENDS, STOCK_REGISTER, BackendError, BackendSpec, Form, get_backend,  # noqa: F401
                                      check_runs, mode_refusal, register)
from saf.deploy.backends.emulator import MODES as EMULATOR_MODES
from saf.deploy.backends.trained import run_trained, trained_refuses
from saf.deploy.backends.work import onnx_macs
from saf.export.result import BackendResult
from saf.core.neuron_modes import ALL_MODES, RESET_SUBTRACT_UNDECAYED

FAULTS = {
    "lsb": "one weight of the first layer changed by one LSB",
    "tie": "threshold comparison flipped on every layer: V > TH<<F (Lava's stock LIF, unconverted) where the layer "
           "fires at >=, and >= where it says >",
    "hard-reset": "hard reset V' = 0 instead of subtractive",
    "reset-swap": "every layer's reset replaced: subtract -> zero, zero -> subtract, subtract-undecayed -> subtract "
                  "(the subtraction decayed with the leak)",
    "delay": "Lava's one-step synaptic delay left uncompensated on every feed-forward connection",
    "u-21bit": "the current I<<F held in a 21-bit register that wraps (Loihi's u register has 24 bits)",
    "readout-leak": "the readout's leak ignored: a plain sum where the trained readout leaks with lam",
    "pool-window": "the first sum-pool stage's k x k windows shifted by one column (export/fold/sum_pool.py)",
    "current-decay": "a two-state layer's current register not carried over steps (du ignored)",
    "initial-current": "a two-state layer's current register started at 0 each sample (its initial current u0 ignored)",
    "first-spike": "the first-spike readout computed as a spike count (plain sum) instead",
    "readout-delay": "the readout's one-step delay left uncompensated: it reads the last spiking layer's spikes one "
                     "step late, so the last step's output spikes are never counted",
    "low-word": "a two-synapse-word layer's low word dropped (only hi * 2^7 of W = hi * 2^7 + lo, hw_targets/words.py)",
    "high-word": "a two-synapse-word layer's high word dropped (only lo of W = hi * 2^7 + lo)",
}
_FAULT_OPTS = {"tie": {"tie": "flip"}, "hard-reset": {"reset": "zero"}, "reset-swap": {"reset": "swap"}, "delay": {"feedforward_delay": 1},
               "u-21bit": {"current_bits": 21}, "readout-leak": {"readout_leak": False},
               "current-decay": {"current_decay": False}, "first-spike": {"first_spike": False},
               "readout-delay": {"readout_delay": 1},
               "initial-current": {"initial_current": False}}


@dataclass
class Bundle:
    path: Optional[Path]
    manifest: dict
    graph: Graph
    cache: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)     # name -> the bytes that were hashed (ONNX model, sources)

    @classmethod
    def load(cls, path) -> "Bundle":
        """Load and authenticate (schema, manifest digest, every file's sha256; see export/bundle/auth.py).
        Each file is read once: the bytes hashed are the bytes parsed (weights) or kept here and run (the
        ONNX model, the float sources); nothing is read from the directory again."""
        path = Path(path)
        manifest, files = read_bundle(path)
        graph = load_graph(path, manifest, files)
        return cls(path, manifest, graph, files={k: v for k, v in files.items() if k != WEIGHTS})

    def file_bytes(self, name: str, error=BundleError) -> bytes:
        """The authenticated bytes of one bundle file, as read and hashed at load."""
        if name not in self.files:
            raise error(f"{self.path}: no {name} in the bundle" + (
                " (exported from a random model?)" if name == SOURCE_FILE else ""))
        return self.files[name]

    @property
    def dataset(self) -> Optional[str]:
        return (self.manifest.get("meta", {}).get("train_config") or {}).get("dataset")


LAVA_BACKENDS = frozenset({"lava", "lava-own"})   # the backends that import lava (require_lava first)
# the modes Lava's stock LIF can run (deploy/lava/stock.py): natively zero + > (no override), the others
# with its compare and/or reset_voltage overridden; subtract-undecayed needs a state it does not have
STOCK_MODES = frozenset(m for m in ALL_MODES if m.reset != RESET_SUBTRACT_UNDECAYED)


def require_lava(flag: str) -> None:
    """Fail up front, in one line, when the Lava backend cannot be imported here (lava-nc 0.10.0
    needs Python 3.10), instead of after every other backend has run."""
    try:
        import saf.deploy.lava.backend  # noqa: F401 - imports lava
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and not (e.name or "lava").startswith("lava"):
            raise                                     # one of ours is missing: a bug, not the user's
        raise BackendError(f"{flag}: the lava backend cannot run on this Python ({type(e).__name__}: {e}); "
                           f"install lava-nc 0.10.0 (Python 3.10) or use the other backends "
                           f"(saf-int, emulator, onnx)") from None


def _shifted_pool(graph: Graph) -> Graph:
    """The graph with its first sum-pooled layer written in folded form (export/sum_pool.unpool_layer)
    and its folded weight rolled by one input column: every k x k pooling window off by one."""
    from saf.export.fold.sum_pool import unpool_layer

    idx = [i for i, l in enumerate(graph.layers) if int(l.in_pool) > 1]
    if not idx:
        raise BackendError("fault pool-window needs a bundle with a sum-pool stage (export with --sum-pool "
                           "auto or on); this one has none, so the fault would change nothing")
    g = copy.copy(graph)
    g.layers = list(graph.layers)
    layer = unpool_layer(graph.layers[idx[0]])
    w = layer.weight
    if layer.kind == "conv":
        w = np.roll(w, 1, axis=3)
    else:
        c, h, wd = layer.in_shape
        w = np.roll(w.reshape(w.shape[0], c, h, wd), 1, axis=3).reshape(w.shape)
    g.layers[idx[0]] = copy.copy(layer)
    g.layers[idx[0]].weight = w
    return g


def _dropped_word(graph: Graph, fault: str) -> Graph:
    """Every two-word connection (layers and the feedback into them) with one of its words left out."""
    from saf.hw_targets.words import WORD_SHIFT, split_words

    if not any(int(l.weight_words) == 2 for l in graph.layers):
        raise BackendError(f"fault {fault} needs a bundle with two synapse words per weight (export --synapse-words 2); "
                           f"this one has one word per weight, so the fault would change nothing")

    def drop(w):
        hi, lo = split_words(w)
        return hi << WORD_SHIFT if fault == "low-word" else lo

    g = copy.deepcopy(graph)
    for l in g.layers:
        if int(l.weight_words) == 2:
            l.weight = drop(l.weight)
    for f in g.feedback:
        if int(g.layers[f.dst].weight_words) == 2:
            f.weight = drop(f.weight)
    return g


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
    if fault == "pool-window":
        return _shifted_pool(graph), {}
    if fault in ("low-word", "high-word"):
        return _dropped_word(graph, fault), {}
    if fault == "readout-leak" and not graph.readout.decay:
        raise BackendError("fault readout-leak needs a bundle whose readout leaks (trained with saf-f); "
                           "this readout does not, so the fault would change nothing")
    if fault == "current-decay" and not any(l.two_state for l in graph.spiking_layers):
        raise BackendError("fault current-decay needs a bundle with two-state layers (du < 4095, FP); "
                           "this one carries no current, so the fault would change nothing")
    if fault == "initial-current" and not any(l.has_initial_current for l in graph.spiking_layers):
        raise BackendError("fault initial-current needs a bundle with an initial current (u0: a bias inside a Synaptic "
                           "layer's current); this one has none, so the fault would change nothing")
    if fault == "hard-reset" and all(l.reset == "zero" for l in graph.spiking_layers):
        raise BackendError("fault hard-reset needs a layer whose reset is not zero already; every layer of this "
                           "one resets to zero, so the fault would change nothing (try reset-swap)")
    if fault == "first-spike" and not graph.readout.first_spike:
        raise BackendError("fault first-spike needs a bundle with a first-spike readout (FP); this one has none")
    return graph, _FAULT_OPTS[fault]


def saf_int_refuses(graph: Graph) -> str:
    """Why the SAF form cannot run `graph` ("" when it can): it has no current register nor a
    first-spike readout (FP networks; the certificate's training_form row)."""
    from saf.export.proof.certificate import has_saf_form
    return "" if has_saf_form(graph) else (
        "the SAF accumulation form has no current register (two-state layers, du < 4095) and no "
        "first-spike readout: an FP network has no integer SAF form (compare emulator, onnx, lava, lava-own)")


def _run_saf_int(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    from saf.export.proof.saf_int import run_saf_int
    return run_saf_int(g, xq, record_spikes=record_spikes, record_potentials=record_potentials)


def _run_emulator(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    from saf.deploy.backends.emulator import EmulatorPlan, emulate
    own = g is bundle.graph
    plan = bundle.cache.get("emulator_plan") if own else None
    if plan is None:                           # unrolled synapses: built once per bundle
        plan = EmulatorPlan(g, 0)
        if own:
            bundle.cache["emulator_plan"] = plan
    return emulate(g, xq, record_spikes=record_spikes, record_potentials=record_potentials, plan=plan)


def _run_onnx(bundle, g, xq, record_spikes, record_potentials, progress, providers=None, **opts):
    from saf.deploy.backends.onnx_runner import run_onnx
    return run_onnx(bundle.file_bytes(ONNX_FILE), g, xq, record_spikes=record_spikes, progress=progress,
                    providers=providers, where=f"{bundle.path}/{ONNX_FILE}", **opts)


def _run_onnx_cuda(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    return _run_onnx(bundle, g, xq, record_spikes, record_potentials, progress,
                     providers=["CUDAExecutionProvider"], require="CUDAExecutionProvider", **opts)


def _cuda_missing() -> str:
    import onnxruntime as ort
    return "" if "CUDAExecutionProvider" in ort.get_available_providers() else \
        "onnxruntime has no CUDAExecutionProvider"


def _run_lava_own(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    from saf.deploy.lava.backend import run_lava
    return run_lava(g, xq, record_spikes=record_spikes, progress=progress, **opts)


def stock_refuses(graph: Graph) -> str:
    """Why Lava's stock models cannot run `graph` exactly ("" when they can): what
    deploy/lava/stock.py refuses, or a layer whose worst input would wrap the stock LIF's 24-bit
    current register u (whatever the bundle's target). Imports lava (call after require_lava)."""
    from saf.deploy.lava.stock import stock_refusal
    why = stock_refusal(graph)
    for i in range(len(graph.spiking_layers)):
        if why:
            break
        c = current_register_check(graph, i, STOCK_REGISTER, "Lava's stock LIF")
        why = "" if c.ok else f"layer {c.layer}: {c.detail}"
    return f"{why}; use lava-own (the toolchain's own Lava Processes)" if why else ""


def lava_model_for(graph: Graph) -> tuple:
    """(record, reason): `lava` (Lava's stock LIF model) where it can run `graph`, else `lava-own` and
    why the stock model cannot (call after require_lava)."""
    why = BACKENDS["lava"].refuses(graph)
    return (BACKENDS["lava-own"], why) if why else (BACKENDS["lava"], "")


def _run_lava_stock(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    from saf.deploy.lava.stock import StockModelError, run_lava_stock
    from saf.deploy.lava.stock_encode import EncodingError
    try:
        return run_lava_stock(g, xq, record_spikes=record_spikes, progress=progress, **opts)
    except (StockModelError, EncodingError) as e:
        raise BackendError(f"lava: {e}; use lava-own (the toolchain's own Lava Processes)") from None


def _float_model(bundle: Bundle):
    from saf.train.checkpoint import load_model

    data = bundle.file_bytes(SOURCE_FILE, BackendError)      # float backends need the trained weights
    net, spec, _ = load_model(f"{bundle.path}/{SOURCE_FILE}", data=data)
    return net.double()


def _run_float(form: str):
    def run(bundle, g, xq, record_spikes, record_potentials, progress, **opts) -> BackendResult:
        import time

        import torch

        t0 = time.perf_counter()
        net = _float_model(bundle)
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
    return run


# Each integer backend declares the (compare, reset) modes it runs per layer; the certificate's convention
# row checks every layer's against them. Lava's are declared here (importing deploy/lava needs lava):
# lava/procs/stock_lif.py (lava: Lava's stock LIF as it is for zero + >, its compare and/or reset_voltage
# overridden for the others it can hold; no subtract-undecayed) and lava/procs/lif.py (lava-own: all).
register(BackendSpec("saf-int", Form.SAF, True, _run_saf_int, SAF_INT_MODES,
                     description="SAF form, exact integer arithmetic", refuses=saf_int_refuses))
register(BackendSpec("emulator", Form.LIF, True, _run_emulator, EMULATOR_MODES,
                     description="numpy emulator of the integer LIF form"))
register(BackendSpec("onnx", Form.LIF, False, _run_onnx, ONNX_MODES,
                     description="onnxruntime, CPU provider", work=onnx_macs))
register(BackendSpec("onnx-cuda", Form.LIF, False, _run_onnx_cuda, ONNX_MODES,
                     covered=False, unavailable=_cuda_missing, work=onnx_macs,
                     description="onnxruntime, CUDA provider (not covered by the certificate)"))
register(BackendSpec("lava", Form.LIF, False, _run_lava_stock, STOCK_MODES, subset=True,
                     refuses=stock_refuses, current_register=STOCK_REGISTER, fallback="lava-own",
                     description="simulated Loihi: Lava's stock Dense/Conv/LIFReset models, fixed_pt "
                                 "(compare and reset overridden where the layer's modes differ from Lava's)"))
register(BackendSpec("lava-own", Form.LIF, False, _run_lava_own, frozenset(ALL_MODES), subset=True,
                     description="the toolchain's own Lava Processes, fixed_pt: a transcription of the IR's "
                                 "arithmetic, not Lava's Loihi models"))
def saf_float_refuses(graph: Graph) -> str:
    """The float SAF form exists only where every layer has the default reset and compare and no synaptic
    current (train/modules/network.py `saf_form_valid`)."""
    odd = next((l for l in graph.spiking_layers if not l.mode.is_default), None)
    if odd is not None:
        return (f"layer {odd.name} has reset {odd.reset!r} / compare {odd.compare!r}: the float SAF form is defined "
                f"only for reset 'subtract' with compare '>=' (use lif-float)")
    cur = next((l for l in graph.spiking_layers if l.two_state), None)
    return "" if cur is None else (f"layer {cur.name} has a synaptic current (du {int(cur.du)}): the float SAF form "
                                   f"holds no current state (use lif-float)")


register(BackendSpec("saf-float", Form.FLOAT, False, _run_float("saf"), None, description="trained float, SAF form",
                     refuses=saf_float_refuses))
register(BackendSpec("lif-float", Form.FLOAT, False, _run_float("lif"), None, description="trained float, LIF form"))
register(BackendSpec("trained", Form.LIF, True, run_trained, frozenset(ALL_MODES), refuses=trained_refuses,
                     description="the grid-trained checkpoint's own torch forward (saf train / saf eval), CPU"))
import saf.deploy.backends.netx_backend  # noqa: E402,F401 - registers `netx`


def fault_backend(fault: str) -> BackendSpec:
    """The emulator with one injected fault, as its own record (never registered, never parsed)."""
    if fault not in FAULTS:
        raise BackendError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")

    def run(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
        from saf.deploy.backends.emulator import emulate
        g2, fopts = inject_fault(g, fault)
        return emulate(g2, xq, record_spikes=record_spikes, record_potentials=record_potentials, **fopts)
    base = BACKENDS["emulator"]
    return BackendSpec(f"emulator[{fault}]", Form.LIF, True, run, base.convention,
                       description=f"emulator with an injected fault: {FAULTS[fault]}")


def run_spec(spec: BackendSpec, bundle: Bundle, xq: np.ndarray, record_spikes: bool = True,
             record_potentials: bool = False, progress: bool = False, graph: Optional[Graph] = None,
             **opts) -> BackendResult:
    """Run one backend record, refused first where it cannot run (chunked callers check once: run_checked)."""
    why = spec.unavailable()
    if why:
        raise BackendError(f"{spec.name} cannot run here: {why}")
    check_runs([spec], graph if graph is not None else bundle.graph)
    return run_checked(spec, bundle, xq, record_spikes, record_potentials, progress, graph, **opts)


def run_checked(spec: BackendSpec, bundle: Bundle, xq: np.ndarray, record_spikes: bool = True,
                record_potentials: bool = False, progress: bool = False, graph: Optional[Graph] = None,
                **opts) -> BackendResult:
    """run_spec without its refusal checks: for a caller that ran check_runs on the network once."""
    if record_potentials and not spec.reports_potentials:
        raise BackendError(f"{spec.name} cannot report membrane potentials")
    g = graph if graph is not None else bundle.graph
    r = spec.runner(bundle, g, xq, record_spikes, record_potentials, progress, **opts)
    r.info.setdefault("implementation", r.backend)
    r.backend = spec.name
    return r


def run_backend(name: str, bundle: Bundle, xq: np.ndarray, record_spikes: bool = True,
                progress: bool = False, fault: Optional[str] = None, graph: Optional[Graph] = None,
                record_potentials: bool = False, **opts) -> BackendResult:
    """Run backend `name` on quantized inputs xq [N, *input_shape]. `fault` (emulator only) injects
    one of FAULTS; `graph` overrides the bundle's graph (tests)."""
    if fault is not None:
        if name != "emulator":
            raise BackendError(f"faults are injected into the emulator backend, not {name}")
        spec = fault_backend(fault)
    else:
        spec = get_backend(name)
    return run_spec(spec, bundle, xq, record_spikes=record_spikes, record_potentials=record_potentials,
                    progress=progress, graph=graph, **opts)
