"""The ONNX target as data: the integer network run as a float32 graph by onnxruntime.

Sources:
  [IEEE754] binary32 has a 24-bit significand: every integer with |x| <= 2**24 is exact, and
            sums/products stay exact while every intermediate stays within that range.
  [ORT]     onnxruntime >= 1.16 (the project's pinned minimum) runs opsets up to 19.
  [IR]      export/ir.py: the 12-bit decay D of the integer LIF semantics.
There are no cores: the mapper reports parameter count and bytes instead.
"""
from __future__ import annotations

from saf.hw_targets.base import Target

ONNX = Target(
    name="onnx",
    description="ONNX float32 graph (onnxruntime); integers exact below 2**24",
    kind="onnx",
    # "sumpool": a k x k sum pool in front of a layer (export/onnx_model.py: Reshape + ReduceSum, exact)
    supported_kinds=frozenset({"dense", "conv", "readout", "sumpool"}),
    # no synapse format: weights are float32 initializers, bounded only by exactness below.
    weight_magnitude_max=None,
    weight_bits=None,
    state_bits=None,
    frac_bits=0,                 # no hardware alignment; the graph uses the network's own F
    # [IEEE754] float32 represents every integer up to 2**24 exactly.
    float_exact_int=1 << 24,
    # [IR] the leak is the same 12-bit D on every target.
    decay_bits=12,
    # [ORT] choice: opset 17 runs on every onnxruntime the project accepts.
    onnx_opset=17,
    graded_spikes=True,          # the input is a tensor; any integer value passes
    max_message_bits=32,
)
