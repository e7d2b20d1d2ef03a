"""Intel Loihi (first generation) as data.

Sources, cited per number below:
  [D18]   Davies et al., "Loihi: a neuromorphic manycore processor with on-chip learning",
          IEEE Micro 38(1), 2018.
  [NL]    nengo-loihi's documented hardware limits (nengo_loihi/block.py MAX_COMPARTMENTS,
          MAX_IN_AXONS, MAX_OUT_AXONS, MAX_SYNAPSE_BITS, SynapseConfig.bits_per_axon;
          nengo_loihi/builder/discretize.py VTH_MAN_MAX, BIAS_MAN_MAX, BIAS_EXP_MAX).
  [LAVA]  lava-nc 0.10.0, whose bit-accurate models are Loihi 1's CUBA arithmetic:
          lava/proc/lif/models.py (AbstractPyLifModelFixed, PyLifModelBitAcc) and
          lava/utils/weightutils.py (clip_weights, truncate_weights).
  [L2B]   Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology
          brief, 2021 (its Loihi-vs-Loihi 2 table).
Modelling choices (not chip facts) are marked "choice".
"""
from __future__ import annotations

from saf.hw_targets.base import Target

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
    # are handled by wrapping around"); [DES] sec. 5: the current-register condition.
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
)
