"""Graph IR: the integer network that every deployed form (Lava, ONNX, emulator) runs.

Numpy only (no torch), so deploy backends can load it without the training stack. Every record checks itself
where it is made and Graph.validate() checks how they join (export/ir_check.py: IRError, one line).

Integer LIF semantics (the single definition every backend implements; docs/design.md#the-integer-network-ir).
For a spiking layer with integer weights W, bias B, threshold TH, fractional bits F and
12-bit decay D (leak lam_q = (4096 - D) / 4096), at steps t = 1..T with V'[0] = v0 (Layer.v0, an
initial membrane potential in state units, i.e. already << F; 0 for every network but DSR's alpha
firing, which fires at alpha*TH by starting at (1-alpha)*TH << F, docs/design.md#initial-potential-and-alpha-firing):

    I[t]  = W s_in[t] + B  (+ W_fb s_src[t-1] for each feedback edge into the layer, s_src[0] = 0)
    V[t]  = decay(V'[t-1]) + (I[t] << F)          decay(x) = sign(x) * ((|x| * (4096 - D)) >> 12)
    V[t]  = clip(V[t], -(2^23 - 1), 2^23 - 1)      (24-bit saturating state)
    s[t]  = V[t] >= (TH << F)                      (fire at equality: the default compare)
    V'[t] = V[t] - s[t] * (TH << F)                (subtractive reset, leak after reset: the default)

Per-layer modes (Layer.reset, Layer.compare; core/neuron_modes.py, the one list of allowed values; a
manifest without them means the defaults above). compare ">" fires on s[t] = V[t] > (TH << F) (no
conversion to >= with TH + 1: TH << F is kept as stated). reset:
    "subtract"            as above
    "zero"                V'[t] = V[t] * (1 - s[t])             (Lava's stock LIF: v = 0 after a spike)
    "subtract-undecayed"  V'[t] = V[t], and the next step subtracts after the decay:
                          V[t] = clip(decay(V'[t-1]) - s[t-1] * (TH << F) + (I[t] << F))

The first layer's s_in[t] is the quantized input: x_q constant over time (an image, the default),
or a time-varying x_q[t] (a spike train / event frames, one frame per step: xq [N, T, *input_shape];
Graph.input_time_varying records that the model was trained on such input). Every other layer's
s_in is the previous layer's binary spikes. The readout layer is an integrator with no
threshold and no clip, leaking with its own 12-bit decay D_r (layer.decay: 0, or the network's D
when the trained readout leaks with lam, train/readout.py):

    R[t] = decay_r(R[t-1]) + ((W s_N[t] + B) << F_r),   R[0] = 0,   output R[T] (integer logits)

with F_r = Layer.readout_shift: 0 for a non-leaking readout (R[T] = sum_t (W s_N[t] + B), as every
bundle before leaking readouts), its frac_bits F when it leaks. F >= k(T-1) for lam_q = 2^-k makes
R[T] = (sum_t lam^(T-t) (W s_N[t] + B)) << F exact: every truncated decay drops only zero bits (the
certificate's readout_leak check).
Sum pooling (Layer.in_pool = k > 1, export/fold/sum_pool.py): the layer's input (C, H, W) is first summed
over k x k blocks, s_pool[c, i, j] = sum_{a, b < k} s_in[c, ik + a, jk + b] (counts 0..k^2 for spikes),
and W applies to s_pool: W s_pool equals the folded layer (AvgPool's 1/k^2 folded into W replicated
over each block) bit for bit, with k^2 fewer weights.
Two-state (CUBA) layers (FP, docs/methods.md#fp-deployment; Layer.du, Loihi's 12-bit current decay). A
spiking layer holds a current register U besides V, exactly Lava's stock fixed-point LIF
(docs/design.md#lavas-lif-registers) except the >= compare and the subtractive reset, U[0] = u0 (Layer.u0; 0 without one):

    U[t]  = trunc0(U[t-1] * (4095 - du) / 4096) + ((W s_in[t] + W_fb s_src[t-1]) << F)
    V[t]  = clip(decay(V'[t-1]) + U[t] + (B << F))      then fire and reset as above

trunc0 truncates toward zero (current_decay below). du = 4095 (the default) carries nothing from
step to step: U[t] = (W s_in + W_fb s_src) << F and the two lines are the one-state recurrence above,
bit for bit. U is not clipped: the certificate's current_reg check bounds it (geometric sum with
factor (4095 - du) / 4096, plus |u0|) below 2^23, where Loihi's 24-bit u register would wrap.
Initial current (Layer.u0, two-state layers only; None: U[0] = 0): U[0] = u0 (per output channel of a conv,
per neuron of a dense layer, in state units), set again at the start of every sample. It is how a bias the
synaptic current integrates (snnTorch's Synaptic: syn[t] = alpha syn[t-1] + W x[t] + b) deploys exactly:
with c = b / (1 - alpha), B = c and u0 = -(c << F) give U[t] + (B << F) = (sum_t' alpha^(t-t') W x[t'] +
c (1 - alpha^t)) << F = syn[t] << F (export/quantize.py, which also proves the truncations exact).

First-spike readout (Layer.first_spike, FP's readout, docs/design.md#readouts): the readout layer (identity
weights on the output spiking layer, B = 0, as fold_fp writes it) outputs

    R[k] = T + 1 - (first step t in 1..T with (W s_N[t] + B)[k] > 0),   0 if there is none

so argmax R (lowest index on ties) is the first output neuron to spike (t_first = T + 1 - R).

Conv weights use torch's layout [C_out, C_in, kh, kw] and cross-correlation; dense [out, in].
Inputs and feature maps are [C, H, W] per sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from saf.export.ir_check import (Compare, IRError, LAYER_KINDS, LayerKind, Reset, SynapseKind,  # noqa: F401
                                  check_feedback, check_graph, check_layer)
from saf.hw_targets.words import check_words
from saf.train.grid.rules import (DECAY_BITS, DECAY_ONE, STATE_BITS, STATE_MAX,  # noqa: F401
                                  quantize_input_values, trunc_decay_int)
from saf.core.neuron_modes import ALL_MODES, DEFAULT_COMPARE, DEFAULT_MODE, DEFAULT_RESET, NeuronMode

# STATE_BITS, STATE_MAX, DECAY_BITS, DECAY_ONE: defined once in train/grid/rules.py (the grid-trained forward
# uses them too), re-exported here for every importer of the IR.
DU_NONE = DECAY_ONE - 1          # Layer.du that keeps no current from one step to the next


# How a form resolves a threshold tie and resets (compare ">=" fires at V == TH << F, ">" does not; reset
# "subtract", "subtract-undecayed" or "zero"): a layer's modes, and what each backend declares it runs.
Convention = NeuronMode

# The default semantics above (every layer of every bundle written before per-layer modes).
IR_CONVENTION = DEFAULT_MODE


def declared_mode(declared, mode: NeuronMode) -> Optional[NeuronMode]:
    """The mode a backend runs on a layer whose own mode is `mode`. `declared` is the backend's declaration:
    one Convention (it runs that on every layer, whatever the layer says: a fixed neuron) or a set of them
    (it runs each layer's own mode when the set holds it). None: it cannot run the layer."""
    if isinstance(declared, NeuronMode):
        return declared
    return mode if mode in declared else None


def modes_text(declared) -> str:
    """A declaration in words (verify's report)."""
    if isinstance(declared, NeuronMode):
        return str(declared)
    if len(declared) == len(ALL_MODES):
        return "each layer's own compare and reset (all of them)"
    return "each layer's own compare and reset, where it is one of: " + "; ".join(
        str(m) for m in ALL_MODES if m in declared)


@dataclass
class Layer:
    """One synaptic connection plus the neurons it drives."""
    name: str
    kind: LayerKind               # "dense" | "conv" | "readout" (readout is dense into integrators)
    weight: np.ndarray            # int64
    bias: np.ndarray              # int64, one per output channel (conv) or neuron (dense)
    in_shape: tuple               # (C, H, W) or (N,)
    out_shape: tuple
    threshold: int = 0            # integer TH (spiking layers)
    stride: int = 1
    padding: int = 0
    scale: float = 1.0            # integer = float * scale for this layer's weights/bias/threshold
    frac_bits: int = 6            # F: the state holds value << F
    decay: int = 0                # readout only: its 12-bit leak D_r (0: none; else the graph's decay)
    v0: int = 0                   # spiking only: initial potential V'[0] in state units (<< F); 0 = none
    in_pool: int = 1              # k > 1: the input (C, H, W) is first sum-pooled k x k (integer counts,
                                  # 0..k^2 for spikes), then weight applies to the pooled (C, H/k, W/k)
    du: int = 4095                # spiking only: Lava's 12-bit current decay (U *= (4095-du)/4096); 4095 = none
    u0: Optional[np.ndarray] = None  # two-state only: initial current U[0] (int64, state units, shaped like bias)
    first_spike: bool = False     # readout only: R[k] = T + 1 - first step with (W s_N + B)[k] > 0 (0: never)
    reset: Reset = DEFAULT_RESET  # spiking only: "subtract" | "subtract-undecayed" | "zero" (core/neuron_modes.py)
    compare: Compare = DEFAULT_COMPARE  # spiking only: ">=" | ">"
    weight_words: int = 1         # synapse words per weight into this layer (feed-forward and feedback):
                                  # 2 = W split hi * 2^7 + lo on Loihi 2 (hw_targets/words.py); the math is W

    @property
    def syn_in_shape(self) -> tuple:
        """What the weight reads: in_shape, or its k x k sum-pooled shape when in_pool = k > 1."""
        k = int(self.in_pool)
        if k == 1:
            return tuple(self.in_shape)
        c, h, w = self.in_shape
        return (int(c), int(h) // k, int(w) // k)

    def pool_input(self, x: np.ndarray) -> np.ndarray:
        """x [..., n_in] (flattened in_shape) -> what the weight reads, [..., prod(syn_in_shape)]."""
        return sum_pool(x, self.in_shape, int(self.in_pool)) if int(self.in_pool) > 1 else x

    @property
    def mode(self) -> NeuronMode:
        """The layer's (compare, reset) as one record (validated)."""
        return NeuronMode(self.compare, self.reset)

    def __post_init__(self):
        """Refuse (IRError, one line) a malformed layer where it is made: export/ir_check.py."""
        try:
            self.weight_words = check_words(self.weight_words)
        except ValueError as e:
            raise IRError(f"layer {self.name!r}: {e}") from None
        check_layer(self)

    @property
    def spiking(self) -> bool:
        return self.kind != "readout"

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def two_state(self) -> bool:
        """A spiking layer whose current register carries over steps (du < 4095)."""
        return self.spiking and int(self.du) != DU_NONE

    @property
    def has_initial_current(self) -> bool:
        """A two-state layer whose current register starts a sample at some U[0] = u0 != 0."""
        return self.two_state and self.u0 is not None and bool(np.any(np.asarray(self.u0) != 0))

    def full_initial_current(self) -> np.ndarray:
        """int64 U[0] per output neuron (a conv channel's u0 repeated over its positions; zeros without u0)."""
        if not self.has_initial_current:
            return np.zeros(self.n_out, dtype=np.int64)
        u = np.asarray(self.u0, dtype=np.int64)
        return np.repeat(u, int(np.prod(self.out_shape[1:]))) if self.kind == "conv" else u

    @property
    def readout_shift(self) -> int:
        """F_r of the readout integrator: its frac_bits when it leaks (decay > 0), else 0."""
        return int(self.frac_bits) if self.decay else 0

    def full_bias(self) -> np.ndarray:
        """int64 bias per output neuron (a conv channel's bias repeated over its positions)."""
        b = np.asarray(self.bias, dtype=np.int64)
        return np.repeat(b, int(np.prod(self.out_shape[1:]))) if self.kind == "conv" else b

    @property
    def pool_gain(self) -> int:
        """Largest pooled value per unit input: k^2 (1 without pooling)."""
        return int(self.in_pool) ** 2

    @property
    def fan_in(self) -> int:
        if self.kind == "conv":
            return int(np.prod(self.weight.shape[1:]))
        return int(self.weight.shape[1])


@dataclass
class Feedback:
    """A delayed connection from spiking layer `src` back to layer `dst` (dst <= src)."""
    src: int
    dst: int
    kind: SynapseKind             # "dense" | "conv"
    weight: np.ndarray            # int64; maps src's output shape to dst's output shape
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        check_feedback(self)      # its shapes against the layers it joins: Graph.validate


@dataclass
class Graph:
    layers: list                  # list[Layer]; sequential, the last one is the readout
    T: int
    lam: float                    # the trained leak
    decay: int                    # 12-bit decay D; lam_q = (4096 - D) / 4096
    input_shape: tuple
    input_scale: float            # x_q = round(x * input_scale)
    input_bits: int = 8
    input_signed: bool = False
    feedback: list = field(default_factory=list)   # list[Feedback]
    target: str = "loihi2"
    input_time_varying: bool = False               # trained on x[t] frames (events, encoded trains)
    meta: dict = field(default_factory=dict)       # provenance: checkpoint hash, spec, ...

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Refuse (IRError, one line naming the layer or edge) a graph no form can run: every record again
        (a field may have changed since it was made), the layer chain's shapes and the feedback edges."""
        check_graph(self)

    @property
    def lam_q(self) -> float:
        return (DECAY_ONE - self.decay) / DECAY_ONE

    @property
    def spiking_layers(self) -> list:
        return [l for l in self.layers if l.spiking]

    @property
    def input_max(self) -> int:
        """Largest |x_q| the input quantization admits."""
        bits = int(self.input_bits)
        return (1 << (bits - 1)) if self.input_signed else (1 << bits) - 1

    @property
    def readout(self) -> Layer:
        return self.layers[-1]

    def layer_input_max(self, i: int) -> int:
        """Largest |value| layer i's weight reads per step: |x_q| (first layer) or a spike (1), times
        k^2 when the layer sum-pools its input k x k (Layer.in_pool)."""
        return (self.input_max if i == 0 else 1) * self.layers[i].pool_gain

    def feedback_into(self, dst: int) -> list:
        return [f for f in self.feedback if f.dst == dst]

    def input_frames(self, xq: np.ndarray) -> np.ndarray:
        """The first layer's input per step, int64 [N, T, n_in]: xq [N, *input_shape] (constant, repeated
        over T) or xq [N, T, *input_shape] (one frame per step). The one place every form reads x[t]."""
        xq = np.asarray(xq)
        shape, T = tuple(self.input_shape), int(self.T)
        n_in = int(np.prod(shape))
        if xq.ndim == len(shape) + 1 and tuple(xq.shape[1:]) == shape:
            flat = xq.reshape(xq.shape[0], 1, n_in).astype(np.int64, copy=False)
            return np.broadcast_to(flat, (xq.shape[0], T, n_in))        # a read-only view, no copy
        if xq.ndim == len(shape) + 2 and tuple(xq.shape[1:]) == (T, *shape):
            return xq.reshape(xq.shape[0], T, n_in).astype(np.int64)
        dims = ", ".join(map(str, shape))
        raise ValueError(f"xq must have shape [N, {dims}] (constant) or [N, {T}, {dims}] (one frame "
                         f"per step), got {list(xq.shape)}")

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input (already normalized as in training) -> integer x_q, clipped to input_bits."""
        return quantize_input_values(x, self.input_scale, self.input_bits, self.input_signed).astype(np.int64)


def sum_pool(x: np.ndarray, in_shape: tuple, k: int) -> np.ndarray:
    """Sum over k x k blocks: x [..., C*H*W] (flattened C, H, W) -> [..., C*(H/k)*(W/k)]. H and W must be
    multiples of k. Booleans (spikes) are counted in int64; other dtypes keep theirs (exact integers)."""
    c, h, w = (int(d) for d in in_shape)
    if h % k or w % k:
        raise ValueError(f"sum pool {k}x{k} needs H and W divisible by {k}, got {h}x{w}")
    x = np.asarray(x)
    lead = x.shape[:-1]
    dt = np.int64 if x.dtype == bool else x.dtype
    blocks = x.reshape(*lead, c, h // k, k, w // k, k)
    return blocks.sum(axis=(-3, -1), dtype=dt).reshape(*lead, c * (h // k) * (w // k))


def decay_for(lam: float) -> int:
    """12-bit decay constant D such that (4096 - D) / 4096 is lam, rounded to the nearest step."""
    if not (0.0 < lam <= 1.0):
        raise ValueError(f"lam must be in (0, 1], got {lam}")
    return int(round(DECAY_ONE * (1.0 - lam)))


def dyadic_exponent(lam: float) -> Optional[int]:
    """k with lam == 2**-k exactly (k >= 0), else None."""
    for k in range(0, DECAY_BITS + 1):
        if lam == 2.0 ** -k:
            return k
    return None


def trunc_decay(x: np.ndarray, decay: int) -> np.ndarray:
    """Loihi's decay: x * (4096 - D) / 4096 truncated toward zero, in int64."""
    return trunc_decay_int(np.asarray(x, dtype=np.int64), decay)


def current_decay(u: np.ndarray, du: int) -> np.ndarray:
    """Lava's u decay: u * (4095 - du) / 4096 truncated toward zero, in int64 (du = 4095: 0)."""
    u = np.asarray(u, dtype=np.int64)
    m = DU_NONE - int(du)
    return np.sign(u) * ((np.abs(u) * m) >> DECAY_BITS)


def current_decay_bits(du: int) -> int:
    """j with (4095 - du) / 4096 = p / 2^j in lowest terms (p odd): each decay of U divides by 2^j, so U's
    truncation drops only zero bits over n decays when F >= j n (alpha = 1/2, du = 2047: j = 1). 0 for du = 4095."""
    m = DU_NONE - int(du)
    if m <= 0:
        return 0
    return DECAY_BITS - ((m & -m).bit_length() - 1)


def du_for(alpha: float) -> Optional[int]:
    """The 12-bit current decay du with (4095 - du) / 4096 == alpha exactly, or None when there is none."""
    m = alpha * DECAY_ONE
    return DU_NONE - int(m) if 0 < alpha < 1 and m == int(m) else None


def first_spike_readout(drive: np.ndarray) -> np.ndarray:
    """drive [N, T, n]: (W s_N[t] + B) per step -> int64 [N, n], R = T + 1 - first step (1-based)
    with drive > 0, 0 where there is none (Layer.first_spike's definition)."""
    on = np.asarray(drive) > 0
    T = on.shape[1]
    first = np.argmax(on, axis=1)                                  # 0-based first step (0 if none)
    return np.where(on.any(axis=1), T - first, 0).astype(np.int64)
