"""Plain data for hardware checks: a Target (what a chip or runtime can hold), a NetDesc of
LayerDescs (what the exporter wants to put there), and the Violation a rule reports.

Leaf module: numpy and stdlib only. The exporter fills LayerDesc from its integer graph; nothing
here imports train/export/deploy. Numbers that describe real hardware live in loihi1.py,
loihi2.py and onnx.py, each with its source.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from saf.core.errors import SafError


class TargetError(SafError, ValueError):
    """A target name or description a user gave cannot be used."""


@dataclass(frozen=True)
class Target:
    """What one deployment target can hold. `None` means "no such limit on this target"."""
    name: str
    description: str
    kind: str                                   # "loihi" | "onnx"
    supported_kinds: frozenset                  # layer kinds the target runs
    # --- fixed point (neuron and synapse formats)
    weight_magnitude_max: Optional[int] = None  # largest |w| a synapse holds
    weight_bits: Optional[int] = None           # synapse word incl. sign for mixed-sign layers
    weight_words_max: int = 1                   # synapse words one weight may span (words.py; Loihi 2: 2)
    state_bits: Optional[int] = None            # signed state register width (saturating)
    current_register_bits: Optional[int] = None  # signed input register u (input << frac_bits), WRAPS
    frac_bits: int = 0                          # hardware MSB alignment of input and threshold
    threshold_mantissa_max: Optional[int] = None
    bias_mantissa_max: Optional[int] = None
    bias_exp_max: Optional[int] = None
    decay_bits: int = 12                        # leak D in [0, 2**decay_bits - 1]
    float_exact_int: Optional[int] = None       # largest integer a float graph holds exactly
    # --- resources
    neurons_per_core: Optional[int] = None
    synaptic_memory_bytes_per_core: Optional[int] = None
    neuron_state_bytes: int = 0                 # state bytes taken from the same memory per neuron
    cores_per_chip: Optional[int] = None
    max_chips: Optional[int] = None
    system_name: str = ""                       # the real system max_chips describes
    input_axons_per_core: Optional[int] = None
    output_axons_per_core: Optional[int] = None
    # --- synapse encoding (memory cost model; see mapper.py)
    synapses_per_block: int = 64                # synapses sharing one block header
    synapse_header_bits: int = 10               # header bits per block
    memory_word_bits: int = 64                  # blocks round up to whole words
    index_bits_min: int = 6                     # sparse entries address their target compartment
    axon_entry_bytes: int = 8                   # one input-axon entry for shared conv kernels
    # --- communication and time
    graded_spikes: bool = False
    max_message_bits: int = 0                   # graded spike payload width (0: binary spikes)
    conv_weight_sharing: bool = False           # conv kernel stored once per core
    reset_interval_pow2: bool = False           # per-sample state reset period must be 2**k
    onnx_opset: Optional[int] = None
    programmable_neurons: bool = False          # neuron arithmetic (e.g. its shift F) is microcode
    # --- neuron model (what a compartment computes on a spike; rules.check_neuron_model)
    subtractive_reset: bool = True              # V' = V - threshold on a spike (False: V' = 0)
    fires_at_equality: bool = True              # compares V >= threshold (False: strictly V > it)
    threshold_step: int = 1                     # the compared threshold is a multiple of this
    initial_current: bool = True                # a sample's current register may start at U[0] = u0 != 0
    # --- what is checked and estimated (targets.py fills both; not part of the target's identity)
    rules: tuple = field(default=(), compare=False, repr=False)    # rule checks run by check() (rules.py)
    energy: tuple = field(default=(), compare=False, repr=False)   # published per-operation Figures (figures.py)

    @property
    def max_abs_state(self) -> Optional[int]:
        """Largest |state| held without saturation or rounding."""
        if self.state_bits is not None:
            return (1 << (self.state_bits - 1)) - 1
        return self.float_exact_int

    @property
    def total_cores(self) -> Optional[int]:
        if self.cores_per_chip is None or self.max_chips is None:
            return None
        return self.cores_per_chip * self.max_chips

    def with_chips(self, n: int, system_name: str = "") -> "Target":
        """The same target on a system of `n` chips (a bigger or smaller board)."""
        if self.kind != "loihi":
            raise TargetError(f"target '{self.name}' has no chips")
        if int(n) < 1:
            raise TargetError(f"a system needs at least one chip, got {n}")
        return dataclasses.replace(self, max_chips=int(n),
                                   system_name=system_name or f"{int(n)}-chip system")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("rules", "energy")}
        d["supported_kinds"] = sorted(self.supported_kinds)
        return d


@dataclass(frozen=True)
class FeedbackDesc:
    """A delayed connection into a layer from the spikes of a later spiking layer `src` (docs/design.md#feedback,
    one step of delay). in_shape is src's output shape, out_shape the destination's; conv
    maps them with kernel/stride/padding, dense connects every source neuron to every destination
    neuron. The mapper costs its synapses and input axons on the destination's cores and its
    output axons on the source's."""
    src: str
    kind: str                     # "dense" | "conv"
    in_shape: tuple
    out_shape: tuple
    n_weights: int
    kernel: Optional[tuple] = None
    stride: int = 1
    padding: int = 0

    @property
    def fan_in(self) -> int:
        if self.kind == "conv":
            return int(self.in_shape[0]) * int(np.prod(self.kernel))
        return int(np.prod(self.in_shape))


@dataclass
class LayerDesc:
    """One layer as the exporter will deploy it (integer units of export/ir.py).

    n_weights is what is stored (conv: the kernel C_out*C_in*kh*kw; dense: out*in), n_synapses
    the expanded connections (conv: sum over output neurons of in-bounds taps). state_bound is the
    exporter's worst-case |V| in state units (already << frac_bits); max_abs_current, if known,
    is a bound on the per-step input |W s_in + B| (else rules derive a conservative one).
    mixed_sign / odd_weights describe the weights (see weight_stats): mixed-sign synapses spend one
    of their bits on the sign. feedback lists the FeedbackDesc edges into the layer (their weights
    are included in n_weights, n_synapses and the weight statistics).
    """
    name: str
    kind: str                     # "dense" | "conv" | "readout" | "sumpool" | anything else (refused)
    in_shape: tuple
    out_shape: tuple
    n_neurons: int
    fan_in: int
    n_weights: int
    n_synapses: int
    max_abs_weight: int
    threshold: int = 0
    max_abs_bias: int = 0
    state_bound: int = 0
    input_graded: bool = False
    has_feedback_in: bool = False
    kernel: Optional[tuple] = None  # conv (kh, kw); derived from fan_in if square
    stride: int = 1
    padding: int = 0
    mixed_sign: bool = True
    odd_weights: bool = False
    max_abs_current: Optional[int] = None
    feedback: tuple = ()          # FeedbackDesc edges into this layer
    bias_zero_bits: int = 0       # every bias is a multiple of 2**bias_zero_bits (rules.exact_bias_limit)
    # the neuron this layer was trained for (export/ir.py Layer.reset / compare; default: subtractive
    # reset, fire at V >= TH << F); plain values, hw_targets is a leaf
    subtractive_reset: bool = True
    fires_at_equality: bool = True
    weight_words: int = 1         # synapse words per weight (words.py): 2 stores every synapse twice
    initial_current: bool = False  # its current register starts a sample at U[0] = u0 != 0 (export/ir.py Layer.u0)

    def __post_init__(self):
        self.in_shape = tuple(int(v) for v in self.in_shape)
        self.out_shape = tuple(int(v) for v in self.out_shape)
        self.feedback = tuple(self.feedback)
        self.has_feedback_in = self.has_feedback_in or bool(self.feedback)
        for f in self.feedback:
            if tuple(f.out_shape) != self.out_shape:
                raise ValueError(f"layer {self.name}: feedback from {f.src} ends in {tuple(f.out_shape)}, "
                                 f"the layer's output is {self.out_shape}")
        if int(np.prod(self.out_shape)) != self.n_neurons:
            raise ValueError(f"layer {self.name}: n_neurons {self.n_neurons} != prod(out_shape "
                             f"{self.out_shape}) = {int(np.prod(self.out_shape))}")
        if self.kind == "conv":
            self._check_conv()

    def _check_conv(self):
        if len(self.in_shape) != 3 or len(self.out_shape) != 3:
            raise ValueError(f"layer {self.name}: conv shapes must be (C, H, W), got "
                             f"{self.in_shape} -> {self.out_shape}")
        c_in = self.in_shape[0]
        if self.kernel is None:
            k = int(round((self.fan_in / c_in) ** 0.5)) if c_in else 0
            if k < 1 or k * k * c_in != self.fan_in:
                raise ValueError(f"layer {self.name}: fan_in {self.fan_in} is not C_in {c_in} "
                                 f"x a square kernel; give kernel=(kh, kw)")
            self.kernel = (k, k)
        self.kernel = tuple(int(v) for v in self.kernel)
        kh, kw = self.kernel
        if kh * kw * c_in != self.fan_in:
            raise ValueError(f"layer {self.name}: fan_in {self.fan_in} != C_in {c_in} x kernel "
                             f"{kh}x{kw}")
        ho = (self.in_shape[1] + 2 * self.padding - kh) // self.stride + 1
        wo = (self.in_shape[2] + 2 * self.padding - kw) // self.stride + 1
        if (ho, wo) != self.out_shape[1:]:
            raise ValueError(f"layer {self.name}: kernel {kh}x{kw} stride {self.stride} padding "
                             f"{self.padding} maps {self.in_shape} to {ho}x{wo}, not "
                             f"{self.out_shape}")

    @property
    def spiking(self) -> bool:
        """A thresholded layer (not the readout integrator, not a sum-pool stage)."""
        return self.kind not in ("readout", "sumpool")

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_biases(self) -> int:
        if self.kind == "sumpool":                 # a pool stage: ones weights, no bias
            return 0
        return self.out_shape[0] if self.kind == "conv" else self.n_neurons

    def grid(self) -> tuple:
        """Output as (channels, rows, cols); dense and readout are (N, 1, 1)."""
        if self.kind in ("conv", "sumpool"):
            return self.out_shape
        return (self.n_neurons, 1, 1)


@dataclass
class NetDesc:
    """A sequential network: layers in order, the last one the readout."""
    layers: list
    T: int
    lam: float
    decay: int
    frac_bits: int = 6
    input_bits: int = 8
    reset_interval: Optional[int] = None   # steps between per-sample resets when streaming
    name: str = "net"

    def __post_init__(self):
        if not self.layers:
            raise ValueError(f"network {self.name} has no layers")
        names = [l.name for l in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"network {self.name}: layer names repeat: {names}")

    @property
    def n_neurons(self) -> int:
        return sum(l.n_neurons for l in self.layers)


class Severity(enum.IntEnum):
    """How a broken rule stops an export; ordered, the most severe is reported first."""
    ADVISORY = 0    # a range question the exactness certificate answers; the export goes on
    ERROR = 1       # the network does not fit the target as described
    REFUSE = 2      # the target's neurons cannot run the network at all


@dataclass
class Violation:
    """One broken rule. `message` names the layer and the numbers."""
    rule: str
    layer: Optional[str]
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return self.message


def weight_stats(weight) -> dict:
    """LayerDesc fields that describe an integer weight array: max_abs_weight, n_weights,
    mixed_sign (both signs present) and odd_weights (some weight is odd)."""
    w = np.asarray(weight)
    if w.size and not np.issubdtype(w.dtype, np.integer):
        if not np.all(w == np.round(w)):
            raise ValueError("weights must be integers (quantize before describing a layer)")
        w = w.astype(np.int64)
    if w.size == 0:
        return dict(max_abs_weight=0, n_weights=0, mixed_sign=False, odd_weights=False)
    return dict(max_abs_weight=int(np.abs(w).max()), n_weights=int(w.size),
                mixed_sign=bool(w.min() < 0 < w.max()), odd_weights=bool(np.any(w % 2 != 0)))
