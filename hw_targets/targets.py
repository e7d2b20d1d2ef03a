"""The deployment targets as records: one Target per chip or runtime (its number formats, resources,
per-core costs, neuron semantics, energy figures and the list of rule checks it runs), the registry
by name, and the name-resolving entry points `check` and `map_network`.

Sources, cited per number below:
  [D18]   Davies et al., "Loihi: a neuromorphic manycore processor with on-chip learning",
          IEEE Micro 38(1), 2018.
  [NL]    nengo-loihi's documented hardware limits (nengo_loihi/block.py MAX_COMPARTMENTS,
          MAX_IN_AXONS, MAX_OUT_AXONS, MAX_SYNAPSE_BITS, SynapseConfig.bits_per_axon;
          nengo_loihi/builder/discretize.py VTH_MAN_MAX, BIAS_MAN_MAX, BIAS_EXP_MAX).
  [LAVA]  lava-nc 0.10.0, whose bit-accurate models are Loihi 1's CUBA arithmetic:
          lava/proc/lif/models.py (AbstractPyLifModelFixed, PyLifModelBitAcc), lava/proc/dense/models.py
          and lava/utils/weightutils.py (clip_weights, truncate_weights). Loihi2SimCfg adds nothing to
          Loihi1SimCfg: these fixed-point formats are the ones Lava simulates for Loihi 2 too.
  [L2B]   Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology
          brief, 2021 (its Loihi-vs-Loihi 2 table: 128 neuro-cores, up to 1M neurons and 120M
          synapses per chip, 192 KB flexible memory per neuro-core, graded spikes with up to
          32-bit integer payloads, programmable neurons).
  [O21]   Orchard et al., "Efficient neuromorphic signal processing with Loihi 2", IEEE SiPS
          2021 (graded spikes; convolutional connectivity stored once and shared).
  [DES]   docs/design.md#loihi-and-lava (Lava's behaviour as checked on this project's machines).
  [IEEE754] binary32 has a 24-bit significand: every integer with |x| <= 2**24 is exact, and
          sums/products stay exact while every intermediate stays within that range.
  [ORT]   onnxruntime >= 1.16 (the project's pinned minimum) runs opsets up to 19.
  [IR]    export/ir.py: the 12-bit decay D of the integer LIF semantics.
Energy figures: figures.py (each Figure carries its source). Modelling choices (not chip facts) are
marked "choice".
"""
from __future__ import annotations

import dataclasses

from saf.hw_targets.base import NetDesc, Target, TargetError
from saf.hw_targets.figures import LOIHI1_FIGURES, LOIHI2_FIGURES
from saf.hw_targets.mapper import map_onto
from saf.hw_targets.report import ResourceReport
from saf.hw_targets.rules import RULES, run_rules

LOIHI1 = Target(
    name="loihi1",
    description="Intel Loihi 1 (14 nm, 2018): 128 neuro-cores/chip, CUBA LIF, binary spikes",
    kind="loihi",
    supported_kinds=frozenset({"dense", "conv", "readout"}),
    # [D18] weights are up to 8 bits with a shared exponent; [NL] discretize_weights takes weights
    # "in the range -255 to 255"; [LAVA] clip_weights clips mixed-sign weights to 8 bits + sign.
    weight_magnitude_max=255,
    # [NL] SynapseConfig.shift_bits = 8 - weight_bits + is_mixed and [LAVA] truncate_weights
    # (num_truncate_bits = 8 - num_weight_bits + mixed): an 8-bit synapse word includes the sign
    # of mixed-sign weights, so their lowest bit is dropped above a 7-bit magnitude.
    weight_bits=8,
    # [D18], [LAVA] models.py: "State variables u and v are 24-bits wide" (uv_bitwidth = 24);
    # v saturates at +-(2**23 - 1).
    state_bits=24,
    # [LAVA] AbstractPyLifModelFixed: u = decayed u + (a_in << act_shift), 24 bits, wraps ("Overflows
    # are handled by wrapping around"); [DES] docs/design.md#lavas-lif-registers: the u register.
    current_register_bits=24,
    # [LAVA] models.py: vth_shift = 6 and act_shift = 6 ("Threshold and incoming activation are
    # MSB-aligned using 6-bits").
    frac_bits=6,
    # [NL] VTH_MAN_MAX = 2**17 - 1; [LAVA] PyLifModelBitAcc: "vth: unsigned 17-bit integer
    # (0 to 131071)".
    threshold_mantissa_max=(1 << 17) - 1,
    # [NL] BIAS_MAN_MAX = 4095, BIAS_EXP_MAX = 7; [LAVA] "bias_mant: signed 13-bit integer",
    # "bias_exp: unsigned 3-bit integer (0 to 7)"; effective bias = bias_mant << bias_exp.
    bias_mantissa_max=4095,
    bias_exp_max=7,
    # [LAVA] "du: unsigned 12-bit integer (0 to 4095)", decay_shift = 12.
    decay_bits=12,
    # [D18] 1,024 compartments per core; [NL] MAX_COMPARTMENTS = 1024.
    neurons_per_core=1024,
    # [D18] 128 KB synaptic memory per core; [NL] MAX_SYNAPSE_BITS = 1048576 bits = 128 KiB.
    synaptic_memory_bytes_per_core=128 * 1024,
    # [L2B] Loihi 1 neuron state is a fixed allocation (24 bytes/neuron) outside synaptic memory.
    neuron_state_bytes=0,
    # [D18] 128 neuromorphic cores per chip.
    cores_per_chip=128,
    # choice: Kapoho Bay, Intel's USB-form-factor Loihi 1 system, holds 2 chips. Use
    # Target.with_chips(n) for Nahuku (8-32 chips) or Pohoiki Beach (64 chips).
    max_chips=2,
    system_name="Kapoho Bay (2 chips)",
    # [D18] 4,096 fan-in and fan-out axons per core; [NL] MAX_IN_AXONS = MAX_OUT_AXONS = 4096.
    input_axons_per_core=4096,
    output_axons_per_core=4096,
    # [NL] SynapseConfig.bits_per_axon: blocks of n_synapses + 1 = 64 synapses, each block with a
    # 4-bit synapse_idx and 6-bit n_synapses header, rounded up to 64-bit memory words; sparse
    # entries carry 6..12 index bits (INDEX_BITS_MAP).
    synapses_per_block=64,
    synapse_header_bits=10,
    memory_word_bits=64,
    index_bits_min=6,
    axon_entry_bytes=8,
    # [D18], [L2B] ("Graded spikes: not supported"): spikes are binary. A graded first-layer
    # input is computed on the host and injected as a bias current (rules.check_graded_input).
    graded_spikes=False,
    max_message_bits=0,
    # choice (conservative): conv kernels are expanded into per-connection synapses. nengo-loihi
    # shares some conv weights through population axons; we do not model that.
    conv_weight_sharing=False,
    # choice: Loihi 1 state resets are issued by the host/embedded x86 cores (no hardware period).
    reset_interval_pow2=False,
    # [LAVA] AbstractPyLifModelFixed.reset_voltage sets v = 0 on a spike and spiking_activation
    # fires on v > (vth << 6) strictly; [D18] Loihi 1 compartments have no microcode: the reset
    # and the compare are fixed, and the compared threshold is vth_mant << 6 (a multiple of 64).
    subtractive_reset=False,
    fires_at_equality=False,
    threshold_step=64,
    # choice (conservative): the host's per-sample state reset zeroes u and v ([D18]: Loihi 1 compartments have
    # no microcode), and we know no published way to preset u per sample; a two-state layer with U[0] = u0 != 0
    # (a bias inside snnTorch Synaptic's current, export/quantize.py) is refused (rules.check_neuron_model).
    initial_current=False,
    rules=tuple(RULES),
    energy=LOIHI1_FIGURES,
)

# Loihi 2 as Loihi 1 with what differs (each cited); every other field is Loihi 1's, which [L2B] keeps
# or which nothing published changes ([D18], [NL] where Loihi 2's own figure is unpublished).
LOIHI2 = dataclasses.replace(
    LOIHI1,
    name="loihi2",
    description="Intel Loihi 2 (Intel 4, 2021): 128 neuro-cores/chip, programmable neurons, "
                "graded spikes",
    # "sumpool": a k x k sum-pool stage sending counts as graded spikes (mapper.py; [L2B] graded spikes).
    supported_kinds=frozenset({"dense", "conv", "readout", "sumpool"}),
    # [L2B] up to 1M neurons per chip over 128 neuro-cores: 1,048,576 / 128 = 8,192 per core.
    neurons_per_core=8192,
    # [L2B] 192 KB of memory per neuro-core, flexibly shared by synapses, neuron state and
    # routing (the brief's figure; [DES] says check before relying on it).
    synaptic_memory_bytes_per_core=192 * 1024,
    # choice: our soft-reset neuron keeps v (24-bit) and its bias in two 32-bit words taken from
    # the same flexible memory ([L2B]: neuron state allocation is variable on Loihi 2).
    neuron_state_bytes=8,
    # choice: Kapoho Point, Intel's 8-chip Loihi 2 board (1,024 neuro-cores). Use
    # Target.with_chips(n) for one Oheo Gulch chip (1) or bigger systems.
    max_chips=8,
    system_name="Kapoho Point (8 chips)",
    # [L2B] "integer-valued payload (up to 32 bits)"; [O21] graded spikes. (Lava 0.10.0 stores
    # num_message_bits in a 5-bit Var and its Conv models take 24-bit inputs.)
    graded_spikes=True,
    max_message_bits=32,
    # [O21] convolutional connections: the kernel is stored once per core and shared across
    # positions (population-style axons carry the input channel).
    conv_weight_sharing=True,
    # [DES] "On real Loihi 2 a reset interval must be a power of two".
    reset_interval_pow2=True,
    # choice (hw_targets/words.py): a weight split across two connections into the same neurons, the high
    # word with weight_exp = 7 ([LAVA] Dense shifts its sums by weight_exp; Loihi 2 sums every input).
    weight_words_max=2,
    # [L2B] "programmable neurons" (microcode): the state's fractional bits F are the neuron
    # model's choice, so F = k (T - 1) > 6 for an exact leak at larger T is representable.
    programmable_neurons=True,
    # [L2B] microcode neurons: a subtractive reset and a V >= TH << F compare are a few
    # instructions (docs/design.md#lavas-lif-registers: the stock LIF with reset_voltage and the compare replaced).
    subtractive_reset=True,
    fires_at_equality=True,
    threshold_step=1,
    # [LAVA] LIF's u is a Var with an initial value (LIF(u=...)): deploy/lava sets U[0] = u0 per sample.
    initial_current=True,
    energy=LOIHI2_FIGURES,
)

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
    rules=tuple(RULES),
)


# "loihi" means the current generation.
TARGETS = {"loihi": LOIHI2, "loihi1": LOIHI1, "loihi2": LOIHI2, "onnx": ONNX}


def get_target(name) -> Target:
    """The Target called `name` (case-insensitive); a Target passes through."""
    if isinstance(name, Target):
        return name
    if not isinstance(name, str):
        raise TargetError(f"expected a Target or a target name, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in TARGETS:
        raise TargetError(f"unknown target '{name}' (known: {', '.join(sorted(TARGETS))})")
    return TARGETS[key]


def check(net: NetDesc, target) -> list:
    """Run the target's rule checks (a Target or its name); [] means deployable as described."""
    return run_rules(net, get_target(target))


def map_network(net: NetDesc, target) -> ResourceReport:
    """Assign every layer's neurons and synapses to cores of `target` (a Target or its name)."""
    return map_onto(net, get_target(target))
