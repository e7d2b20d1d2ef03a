"""Intel Loihi 2 as data.

Sources, cited per number below:
  [L2B]   Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology
          brief, 2021 (its Loihi-vs-Loihi 2 table: 128 neuro-cores, up to 1M neurons and 120M
          synapses per chip, 192 KB flexible memory per neuro-core, graded spikes with up to
          32-bit integer payloads, programmable neurons).
  [O21]   Orchard et al., "Efficient neuromorphic signal processing with Loihi 2", IEEE SiPS
          2021 (graded spikes; convolutional connectivity stored once and shared).
  [D18]   Davies et al., IEEE Micro 2018 (Loihi 1 limits, used where Loihi 2's are unpublished).
  [NL]    nengo-loihi's documented limits (block.py, builder/discretize.py).
  [LAVA]  lava-nc 0.10.0 fixed-point models (lava/proc/lif/models.py, lava/proc/dense/models.py,
          lava/utils/weightutils.py). Loihi2SimCfg adds nothing to Loihi1SimCfg: the fixed-point
          formats below are the ones Lava simulates for Loihi 2.
  [DES]   /work/shared/DESIGN.md section 4 (checked on this project's machines).
Modelling choices (not chip facts) are marked "choice".
"""
from __future__ import annotations

from saf.hw_targets.base import Target

LOIHI2 = Target(
    name="loihi2",
    description="Intel Loihi 2 (Intel 4, 2021): 128 neuro-cores/chip, programmable neurons, "
                "graded spikes",
    kind="loihi",
    # "sumpool": a k x k sum-pool stage sending counts as graded spikes (mapper.py; [L2B] graded spikes).
    supported_kinds=frozenset({"dense", "conv", "readout", "sumpool"}),
    # [LAVA] weightutils.clip_weights / Dense fixed-point model: 8-bit weights plus sign;
    # [NL] weights "in the range -255 to 255".
    weight_magnitude_max=255,
    # [LAVA] truncate_weights: with num_weight_bits=8 the sign of mixed-sign weights takes one
    # of the 8 bits ((w >> 1) << 1 in Dense), as on Loihi 1 [NL] shift_bits.
    weight_bits=8,
    # [LAVA] uv_bitwidth = 24 (saturating v at +-(2**23 - 1)); [DES] "Loihi state is 24-bit".
    state_bits=24,
    # [LAVA] AbstractPyLifModelFixed: u = decayed u + (a_in << act_shift), 24 bits, wraps ("Overflows
    # are handled by wrapping around"); [DES] sec. 5: the current-register condition.
    current_register_bits=24,
    # [LAVA] vth_shift = act_shift = 6.
    frac_bits=6,
    # [LAVA] "vth: unsigned 17-bit integer (0 to 131071)".
    threshold_mantissa_max=(1 << 17) - 1,
    # [LAVA] bias_mant 13-bit signed, bias_exp 0..7; [NL] BIAS_MAN_MAX = 4095, BIAS_EXP_MAX = 7.
    bias_mantissa_max=4095,
    bias_exp_max=7,
    # [LAVA] du/dv unsigned 12-bit, decay_shift = 12.
    decay_bits=12,
    # [L2B] up to 1M neurons per chip over 128 neuro-cores: 1,048,576 / 128 = 8,192 per core.
    neurons_per_core=8192,
    # [L2B] 192 KB of memory per neuro-core, flexibly shared by synapses, neuron state and
    # routing (the brief's figure; [DES] says check before relying on it).
    synaptic_memory_bytes_per_core=192 * 1024,
    # choice: our soft-reset neuron keeps v (24-bit) and its bias in two 32-bit words taken from
    # the same flexible memory ([L2B]: neuron state allocation is variable on Loihi 2).
    neuron_state_bytes=8,
    # [L2B] 128 neuro-cores per chip.
    cores_per_chip=128,
    # choice: Kapoho Point, Intel's 8-chip Loihi 2 board (1,024 neuro-cores). Use
    # Target.with_chips(n) for one Oheo Gulch chip (1) or bigger systems.
    max_chips=8,
    system_name="Kapoho Point (8 chips)",
    # choice (conservative): Loihi 2's per-core axon limits are not published; we keep Loihi 1's
    # 4,096 input and output axons per core [D18], [NL] MAX_IN_AXONS / MAX_OUT_AXONS.
    input_axons_per_core=4096,
    output_axons_per_core=4096,
    # choice: Loihi 2's synapse formats are not public; we cost weights with Loihi 1's encoding
    # ([NL] bits_per_axon: 64-synapse blocks, 10 header bits, 64-bit words) and one 64-bit word
    # per input-axon entry of a shared conv kernel.
    synapses_per_block=64,
    synapse_header_bits=10,
    memory_word_bits=64,
    index_bits_min=6,
    axon_entry_bytes=8,
    # [L2B] "integer-valued payload (up to 32 bits)"; [O21] graded spikes. (Lava 0.10.0 stores
    # num_message_bits in a 5-bit Var and its Conv models take 24-bit inputs.)
    graded_spikes=True,
    max_message_bits=32,
    # [O21] convolutional connections: the kernel is stored once per core and shared across
    # positions (population-style axons carry the input channel).
    conv_weight_sharing=True,
    # [DES] "On real Loihi 2 a reset interval must be a power of two".
    reset_interval_pow2=True,
    # [L2B] "programmable neurons" (microcode): the state's fractional bits F are the neuron
    # model's choice, so F = k (T - 1) > 6 for an exact leak at larger T is representable.
    programmable_neurons=True,
    # [L2B] microcode neurons: a subtractive reset and a V >= TH << F compare are a few
    # instructions (DESIGN.md sec. 5: the stock LIF with reset_voltage and the compare replaced).
    subtractive_reset=True,
    fires_at_equality=True,
    threshold_step=1,
)
