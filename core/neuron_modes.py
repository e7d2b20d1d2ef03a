"""Per-layer neuron modes: how a spiking layer resets after a spike and how it compares with its threshold.

The one definition of the allowed values; spec (train/spec.py), the float LIF form (train/functional/
neuron.py), the IR (export/ir.py `Layer.reset` / `Layer.compare`, `Convention`) and every backend import
them from here (hw_targets gets plain strings). Plain Python, no torch, so the IR can import it.

reset (s[t-1] is the previous step's spike, lam the leak, I[t] the input current):
    "subtract"            u[t] = lam * (u[t-1] - theta * s[t-1]) + I[t]   the toolchain's (SAF paper Eq. 1):
                                                                          the subtraction decays with the leak
    "subtract-undecayed"  u[t] = lam * u[t-1] - theta * s[t-1] + I[t]     snnTorch Leaky reset_mechanism="subtract"
    "zero"                u[t] = lam * u[t-1] * (1 - s[t-1]) + I[t]       snnTorch "zero", NIR v_reset = 0,
                                                                          Lava's stock LIF
compare:
    ">="   s[t] = u[t] >= theta   (the toolchain's, fires at equality; the SAF/OTTT forms need it)
    ">"    s[t] = u[t] >  theta   (strict: snnTorch, NIR, Lava's stock LIF)

synaptic current (spec key SYN_DECAY_KEY = "alpha", the current's per-step factor, 0 <= alpha < 1; snnTorch's
Synaptic, NIR's CubaLIF with tau_syn > dt): the layer holds a second state, the current syn, which integrates
the synapse's whole output, its bias included (snnTorch adds the Linear/Conv bias inside the input current):
    syn[t] = alpha * syn[t-1] + (W x[t] + b (+ W_fb s_src[t-1]))      u[t] = (the reset above, with I[t] = syn[t])
Absent (or 0): no current state, I[t] = W x[t] + b: every spec, run and bundle written before is unchanged.
Like the non-default modes it exists only in the LIF form (bptt); the integer layer is export/ir.py's two-state
layer (Layer.du with (4095 - du) / 4096 = alpha).

Absent spec keys mean the defaults (subtract, >=): every spec, run and bundle written before modes existed
is unchanged. The SAF (accumulation) form, OTTT, IDE, DSR and FP are defined for the defaults only; a network
with any other mode trains with `bptt` and evaluates in the LIF form.
"""
from __future__ import annotations

from dataclasses import dataclass

RESET_SUBTRACT = "subtract"
RESET_SUBTRACT_UNDECAYED = "subtract-undecayed"
RESET_ZERO = "zero"
RESETS = (RESET_SUBTRACT, RESET_SUBTRACT_UNDECAYED, RESET_ZERO)

COMPARE_GE = ">="
COMPARE_GT = ">"
COMPARES = (COMPARE_GE, COMPARE_GT)

DEFAULT_RESET = RESET_SUBTRACT
DEFAULT_COMPARE = COMPARE_GE

# training methods that can train a layer with a non-default mode (surrogate gradient through the LIF form)
MODE_METHODS = ("bptt",)

SYN_DECAY_KEY = "alpha"      # spiking-layer spec key: the synaptic current's per-step decay (absent: none)


def syn_decay_problem(value) -> str:
    """'' when `value` is an allowed synaptic decay (a number 0 <= alpha < 1), else what is wrong."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) < 1.0:
        return ""
    return f"'{SYN_DECAY_KEY}' (the synaptic current's decay per step) must be a number in [0, 1), got {value!r}"


_RESET_WORDS = {RESET_SUBTRACT: "subtractive reset", RESET_SUBTRACT_UNDECAYED: "undecayed subtractive reset",
                RESET_ZERO: "hard reset"}


@dataclass(frozen=True)
class NeuronMode:
    """One layer's (compare, reset); also what a backend declares it runs (export/ir.py `Convention`)."""
    compare: str = DEFAULT_COMPARE
    reset: str = DEFAULT_RESET

    def __post_init__(self):
        if self.compare not in COMPARES:
            raise ValueError(f"compare must be one of {', '.join(repr(c) for c in COMPARES)}, got {self.compare!r}")
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {', '.join(repr(r) for r in RESETS)}, got {self.reset!r}")

    @property
    def is_default(self) -> bool:
        return self.compare == DEFAULT_COMPARE and self.reset == DEFAULT_RESET

    @property
    def strict(self) -> bool:
        return self.compare == COMPARE_GT

    def __str__(self) -> str:
        return f"fire when V {self.compare} TH<<F, {_RESET_WORDS[self.reset]}"


DEFAULT_MODE = NeuronMode()
ALL_MODES = tuple(NeuronMode(c, r) for r in RESETS for c in COMPARES)


def mode_problem(value, key: str) -> str:
    """'' when `value` is an allowed value of spec key "reset" or "compare", else what is wrong."""
    allowed = RESETS if key == "reset" else COMPARES
    if isinstance(value, str) and value in allowed:
        return ""
    return f"'{key}' must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}"


def method_refusal(method: str, modes, syn_decays=()) -> str:
    """'' when `method` can train layers with `modes` (a sequence of NeuronMode) and synaptic decays
    (per spiking layer, 0 = none), else one line saying why and which method can."""
    cur = [(i, a) for i, a in enumerate(syn_decays) if a]
    if cur and method not in MODE_METHODS:
        i, a = cur[0]
        return (f"spiking layer {i} has a synaptic current ('{SYN_DECAY_KEY}': {a:g}): --method {method} has no "
                f"such state (the SAF/OTTT forms); train it with --method {' or '.join(MODE_METHODS)} (the LIF form)")
    odd = [(i, m) for i, m in enumerate(modes) if not m.is_default]
    if not odd or method in MODE_METHODS:
        return ""
    i, m = odd[0]
    return (f"spiking layer {i} has reset {m.reset!r} / compare {m.compare!r}: --method {method} is defined only "
            f"for reset 'subtract' with compare '>=' (the SAF/OTTT forms); train it with --method "
            f"{' or '.join(MODE_METHODS)} (the LIF form)")
