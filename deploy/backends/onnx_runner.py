"""Run an exported ONNX model (export/onnx_model.py) in onnxruntime, in batches -> BackendResult."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from saf.export.bundle.error import BundleError
from saf.export.ir import Graph
from saf.export.onnx_check import META_FINGERPRINT, graph_fingerprint
from saf.export.onnx_model import META_SPIKES

from saf.export.result import BackendResult
from saf.deploy.backends.spec import BackendError
from saf.core.counts import check_count


def _session(model, providers) -> ort.InferenceSession:
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise FileNotFoundError(f"ONNX model not found: {model}")
        model = str(model)
    elif not isinstance(model, (bytes, bytearray)):
        raise TypeError(f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def _check_input(graph: Graph, xq) -> np.ndarray:
    xq = np.asarray(xq)
    if xq.dtype.kind not in "iub":
        raise ValueError(f"xq must hold quantized integers (see Graph.quantize_input), got dtype {xq.dtype}")
    frames = graph.input_frames(xq)                  # [N, T, n_in]; raises on a wrong shape
    lo = -graph.input_max if graph.input_signed else 0
    hi = graph.input_max - 1 if graph.input_signed else graph.input_max
    if xq.size and (xq.min() < lo or xq.max() > hi):
        raise ValueError(f"xq values must lie in [{lo}, {hi}] ({graph.input_bits}-bit input), "
                         f"got [{xq.min()}, {xq.max()}]")
    return frames


def run_onnx(model_path_or_bytes, graph: Graph, xq, batch_size: int = 256, record_spikes: bool = True,
             providers=None, progress: bool = False, require: str = "", where: str = "") -> BackendResult:
    """Run the model on quantized inputs xq (int [N, *input_shape], or [N, T, *input_shape] one frame
    per step) in batches of batch_size.

    Returns BackendResult(backend="onnx") with readout int64 [N, classes] and, when record_spikes,
    spikes bool [N, T, n_out] per spiking layer. The exactness proof (export/proof/onnx_exact.py) covers
    onnxruntime's CPUExecutionProvider, the default. `require` names the execution provider that must
    be the one that runs (onnxruntime falls back to the CPU silently when a requested provider cannot
    start): the session's providers are checked after creation and anything else is refused.
    """
    check_count("batch_size", int(batch_size))
    t_start = time.perf_counter()
    xq = _check_input(graph, xq)
    sess = _session(model_path_or_bytes, providers)
    if require and sess.get_providers()[:1] != [require]:
        raise BackendError(f"{where or 'onnx'}: {require} was requested but the session runs on "
                           f"{', '.join(sess.get_providers()) or 'no provider'} (onnxruntime fell back)")
    meta = sess.get_modelmeta().custom_metadata_map
    if meta.get(META_FINGERPRINT) not in (None, graph_fingerprint(graph)):
        where = where or (model_path_or_bytes if isinstance(model_path_or_bytes, (str, Path)) else "the ONNX model")
        raise BundleError(f"{where}: built from a different graph than the bundle's manifest and weights "
                          f"(fingerprint mismatch)")
    spiking = graph.spiking_layers
    names = ["readout"]
    if record_spikes:
        if meta.get(META_SPIKES) == "0":
            raise ValueError("the ONNX model has no spike outputs (built with spikes=False); "
                             "pass record_spikes=False")
        names += [f"spikes_{l.name}" for l in spiking]
    T, n = int(graph.T), xq.shape[0]
    readouts, spikes = [], [[] for _ in spiking]
    starts = range(0, n, int(batch_size))
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="onnx", unit="batch")
    seconds = 0.0
    for s in starts:
        chunk = xq[s:s + int(batch_size)].astype(np.float32)              # [b, T, n_in]
        x = np.ascontiguousarray(chunk.transpose(1, 0, 2).reshape(T, chunk.shape[0], *graph.input_shape))
        t0 = time.perf_counter()
        outs = sess.run(names, {"x": x})
        seconds += time.perf_counter() - t0
        readouts.append(outs[0].astype(np.int64, copy=False))
        for i, o in enumerate(outs[1:]):
            spikes[i].append(np.ascontiguousarray(o.astype(bool, copy=False).transpose(1, 0, 2)))
    n_cls = graph.readout.n_out
    readout = np.concatenate(readouts) if readouts else np.zeros((0, n_cls), dtype=np.int64)
    spk = None
    if record_spikes:
        spk = [np.concatenate(p) if p else np.zeros((0, T, l.n_out), dtype=bool) for p, l in zip(spikes, spiking)]
    total = time.perf_counter() - t_start
    info = {"providers": sess.get_providers(), "batch_size": int(batch_size), "samples": int(n),
            "run_seconds": seconds, "samples_per_s": (n / total) if total > 0 else None}
    return BackendResult(backend="onnx", readout=readout, spikes=spk, seconds=total, info=info)
