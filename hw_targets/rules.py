"""Hardware rules: small named checks, each `check_xxx(net, target) -> list[Violation]` with its
Severity (the `severity` decorator), collected in RULES (the pattern of Rockpool's Xylo design-rule
checks). `check(net, target)` runs them all and stamps each violation with its rule's severity:
REFUSE (the target's neurons cannot run the network), ERROR (does not fit as described),
ADVISORY (a range question the exactness certificate answers: state_bound, current, float_exact).

Every message is one line naming the layer (or the network) and the numbers. A rule that does not
apply to a target (its Target field is None) returns nothing. Units are those of export/ir.py:
a spiking layer adds (W s_in + B) << F to its state (F = net.frac_bits), the readout adds
W s_in + B unshifted; thresholds compare against TH << F.

Modelling choices:
* Weights (check_weight_precision). Loihi's synapse word is `weight_bits` (8) bits and includes
  the sign of mixed-sign layers: nengo-loihi shift_bits = 8 - weight_bits + is_mixed and Lava's
  truncate_weights drop the lowest bit ((w >> 1) << 1). A mixed-sign layer is therefore exact if
  its weights are all even (|w| <= 254), or if |w| <= 127: then the exporter stores 2w and sets
  weight_exp = -1 (the dendrite shifts the sum back, exactly). Odd mixed-sign weights above 127
  would silently change, so they are refused. Single-sign layers keep the full 8-bit magnitude.
  -256 (representable for mixed sign in Lava) is refused with the 255 magnitude limit (choice).
  Two synapse words per weight (LayerDesc.weight_words = 2, words.py; only where Target.weight_words_max
  allows): W = hi * 2^7 + lo, each word an even mixed-sign word, so the layer holds even weights up to
  254 * 2^7 + 254 = 32,766 (check_weight_magnitude) and no odd weight (check_weight_precision).
* Biases (check_bias). The state receives B << F as bias_mant << bias_exp. A layer whose biases are
  all multiples of 2^z (LayerDesc.bias_zero_bits = z; 0 for arbitrary integers) has B << F with
  F + z trailing zeros, so the exponent can be e = min(F + z, bias_exp_max) and |B| <=
  (bias_mantissa_max >> (F + z - e)) << z is exact (exact_bias_limit: 4,095 for F = 6, z = 0;
  8,190 for z = 1, where Lava's stock encoder takes bias_exp 7). Larger biases are refused.
* Currents (check_current). Loihi's synaptic input register is as wide as the state and wraps
  (Lava: u wraps at 24 bits), so (|W s_in + B| << F) must fit. Without max_abs_current we use the
  worst case fan_in x max|w| x max input + max|b| (input max 2**input_bits - 1 for graded input,
  1 for spikes). The exporter should pass the tight bound max_i (sum_j |W_ij|) x max input + |B_i|.
* Graded input on a target without graded spikes (Loihi 1) is injected by the host as a bias
  (see mapper.py), so |W x + B| must fit the exact bias range above.
* Neuron model (check_neuron_model). The network states the neuron it was trained for
  (LayerDesc.subtractive_reset, fires_at_equality per layer: the exporter's default is
  V' = V - TH << F and V >= TH << F); the target states what its compartments do (Target fields
  of the same names and threshold_step, the granularity of the compared threshold). V >= X equals V > X - 1, so firing
  at equality on a strict-compare target needs X - 1 on its threshold grid (and V > X on a
  >=-target needs X + 1). Loihi 1 resets to zero, compares strictly against vth_mant << 6 (never
  X - 1) and takes binary spikes only, so it refuses every network trained with the default neuron,
  in one line naming the rule (docs/design.md#loihi-1-and-loihi-2); a network whose layers reset to zero and compare
  strictly (BPTT with reset/compare modes, NIR imports) on spike-train input passes this rule.
  Loihi 2's microcode neurons run every mode.
* ONNX (check_float_exact): every integer the float32 graph holds (weights, TH << F, B << F,
  inputs, currents plus the state they are added to, readout sums) must be <= 2**24.
"""
from __future__ import annotations

import dataclasses

from saf.hw_targets.base import LayerDesc, NetDesc, Severity, Target, TargetError, Violation
from saf.hw_targets.mapper import require_target, single_neuron_problems
from saf.hw_targets.words import words_max

IR_STATE_MAX = (1 << 23) - 1      # export/ir.py STATE_MAX: the IR clips every spiking state here


def _n(v) -> str:
    return f"{int(v):,}"


def current_bound(layer: LayerDesc, net: NetDesc) -> tuple:
    """(bound on |W s_in + B| per step, derived?): max_abs_current if given, else the worst case."""
    if layer.max_abs_current is not None:
        return int(layer.max_abs_current), False
    in_max = (1 << net.input_bits) - 1 if layer.input_graded else 1
    return layer.fan_in * layer.max_abs_weight * in_max + layer.max_abs_bias, True


def exact_bias_limit(target: Target, frac_bits: int, zero_bits: int = 0) -> int:
    """Largest |B| such that every bias up to it that is a multiple of 2**zero_bits is exact as
    mantissa << exponent (the state adds B << frac_bits)."""
    z = int(zero_bits)
    e = min(frac_bits + z, target.bias_exp_max)
    return (target.bias_mantissa_max >> (frac_bits + z - e)) << z


def bias_grid(target: Target, frac_bits: int, bias_max: int):
    """(z, limit): the fewest low zero bits z (biases rounded to multiples of 2**z) with which
    |B| <= bias_max is exact on target, and that limit; None when no grid holds bias_max (then the
    layer's scale must come down). (0, None) on a target without a bias format."""
    if target.bias_mantissa_max is None:
        return 0, None
    for z, lim in bias_limits(target, frac_bits):
        if bias_max <= lim:
            return z, lim
    return None


def bias_limits(target: Target, frac_bits: int) -> list:
    """[(z, exact_bias_limit)] for every grid 2**z that widens the range (z up to bias_exp_max - F)."""
    return [(z, exact_bias_limit(target, frac_bits, z))
            for z in range(0, max(0, int(target.bias_exp_max) - int(frac_bits)) + 1)]


def severity(level: Severity):
    """Decorator: the Severity of every violation a rule reports."""
    def mark(fn):
        fn.severity = level
        return fn
    return mark


def _v(rule, layer, msg) -> Violation:
    return Violation(rule=rule, layer=layer.name if layer is not None else None, message=msg)


@severity(Severity.REFUSE)
def check_neuron_model(net: NetDesc, target: Target) -> list:
    """One violation listing what the target's neurons cannot run of this network."""
    cannot, F, g = [], net.frac_bits, max(1, int(target.threshold_step))
    spiking = [l for l in net.layers if l.spiking]
    soft = [l.name for l in spiking if l.subtractive_reset]
    if soft and not target.subtractive_reset:
        cannot.append(f"a subtractive reset (layer {soft[0]}: its compartments reset V to 0 on a spike)")
    # the compared threshold the target would need: V >= X is V > X - 1, V > X is V >= X + 1
    for eq in (True, False):
        off = -1 if eq else 1
        bad = [l for l in spiking if l.fires_at_equality == eq != target.fires_at_equality
               and ((int(l.threshold) << F) + off) % g]
        if bad:
            x = int(bad[0].threshold) << F
            want, op = ("V >= TH << F", ">") if eq else ("V > TH << F", ">=")
            cannot.append(f"firing at {want} (layer {bad[0].name}: V {op} {_n(x + off)}, not a "
                          f"multiple of its threshold granularity {_n(g)})")
    graded = [l.name for l in net.layers if l.input_graded]
    if graded and not target.graded_spikes:
        cannot.append(f"graded input (layer {graded[0]}: its spikes are binary)")
    u0 = [l.name for l in spiking if l.initial_current]
    if u0 and not target.initial_current:
        cannot.append(f"an initial synaptic current (layer {u0[0]}: U[0] = u0 != 0, the bias inside a Synaptic "
                      f"current; export --target loihi2, or train the Synaptic layers without a bias)")
    pools = [l.name for l in net.layers if l.kind == "sumpool"]
    if pools and not target.graded_spikes:
        cannot.append(f"a sum-pool stage's graded counts (layer {pools[0]}; export with --sum-pool off to "
                      f"fold the pooling into the next layer)")
    if not cannot:
        return []
    return [_v("neuron_model", None, f"network {net.name}: {target.name}'s neurons cannot run "
               + "; ".join(cannot) + " (rule neuron_model)")]


@severity(Severity.ERROR)
def check_layer_kind(net: NetDesc, target: Target) -> list:
    ok = ", ".join(sorted(target.supported_kinds))
    return [_v("layer_kind", l, f"layer {l.name}: kind '{l.kind}' is not supported on "
               f"{target.name} (supported: {ok})")
            for l in net.layers if l.kind not in target.supported_kinds]


@severity(Severity.ERROR)
def check_weight_magnitude(net: NetDesc, target: Target) -> list:
    m = target.weight_magnitude_max
    if m is None:
        return []
    out = []
    for l in net.layers:
        words = int(l.weight_words)
        if words > target.weight_words_max:
            out.append(_v("weight_magnitude", l, f"layer {l.name}: {words} synapse words per weight; "
                          f"{target.name} holds {target.weight_words_max}"))
        elif words > 1 and l.max_abs_weight > words_max(words, _even_max(target)):
            out.append(_v("weight_magnitude", l, f"layer {l.name}: |weight| {_n(l.max_abs_weight)} exceeds the "
                          f"{_n(words_max(words, _even_max(target)))} of {words} synapse words on {target.name}"))
        elif words == 1 and l.max_abs_weight > m:
            out.append(_v("weight_magnitude", l, f"layer {l.name}: |weight| {_n(l.max_abs_weight)} exceeds "
                          f"{target.name}'s {_n(m)} ({m.bit_length()}-bit magnitude)"))
    return out


def _even_max(target: Target) -> int:
    """Largest even weight one mixed-sign synapse word holds (254 on Loihi)."""
    return (target.weight_magnitude_max or (1 << target.weight_bits) - 1) & ~1


@severity(Severity.ERROR)
def check_weight_precision(net: NetDesc, target: Target) -> list:
    if target.weight_bits is None:
        return []
    odd_max = (1 << (target.weight_bits - 1)) - 1
    even_max = _even_max(target)
    out = [_v("weight_precision", l, f"layer {l.name}: mixed-sign odd weights up to "
              f"|w| {_n(l.max_abs_weight)} lose their lowest bit on {target.name} (its "
              f"{target.weight_bits}-bit synapse incl. sign holds even weights up to {even_max} "
              f"or odd ones up to {odd_max})")
           for l in net.layers
           if int(l.weight_words) == 1 and l.mixed_sign and l.odd_weights and l.max_abs_weight > odd_max]
    return out + [_v("weight_precision", l, f"layer {l.name}: odd weights in {l.weight_words} synapse words: the "
                     f"low word is an even mixed-sign {target.weight_bits}-bit word on {target.name}")
                  for l in net.layers if int(l.weight_words) > 1 and l.odd_weights]


@severity(Severity.ERROR)
def check_threshold(net: NetDesc, target: Target) -> list:
    m = target.threshold_mantissa_max
    if m is None:
        return []
    out = []
    for l in net.layers:
        if not l.spiking:
            continue
        if l.threshold < 0:
            out.append(_v("threshold", l, f"layer {l.name}: threshold {_n(l.threshold)} is "
                          f"negative; {target.name}'s threshold mantissa is unsigned (0..{_n(m)})"))
        elif l.threshold > m:
            out.append(_v("threshold", l, f"layer {l.name}: threshold {_n(l.threshold)} exceeds "
                          f"{target.name}'s {m.bit_length()}-bit mantissa (0..{_n(m)})"))
        elif target.max_abs_state is not None and \
                (l.threshold << net.frac_bits) > target.max_abs_state:
            out.append(_v("threshold", l, f"layer {l.name}: threshold {_n(l.threshold)} << "
                          f"{net.frac_bits} = {_n(l.threshold << net.frac_bits)} exceeds "
                          f"{target.name}'s state range {_n(target.max_abs_state)}"))
    return out


@severity(Severity.ERROR)
def check_bias(net: NetDesc, target: Target) -> list:
    if target.bias_mantissa_max is None:
        return []
    f = net.frac_bits
    return [_v("bias", l, f"layer {l.name}: |bias| {_n(l.max_abs_bias)} is not exact on "
               f"{target.name}: bias << {f} must be mantissa (|m| <= {_n(target.bias_mantissa_max)})"
               f" << exponent (<= {target.bias_exp_max}), exact up to |bias| "
               f"{_n(exact_bias_limit(target, f, l.bias_zero_bits))}"
               + (f" for multiples of 2^{l.bias_zero_bits}" if l.bias_zero_bits else ""))
            for l in net.layers if l.max_abs_bias > exact_bias_limit(target, f, l.bias_zero_bits)]


@severity(Severity.ADVISORY)
def check_state_bound(net: NetDesc, target: Target) -> list:
    if target.state_bits is None:
        return []
    m = target.max_abs_state
    return [_v("state_bound", l, f"layer {l.name}: worst-case |state| {_n(l.state_bound)} exceeds "
               f"{target.name}'s {target.state_bits}-bit state (max {_n(m)}); it would saturate")
            for l in net.layers if l.state_bound > m]


@severity(Severity.ADVISORY)
def check_current(net: NetDesc, target: Target) -> list:
    if target.state_bits is None:
        return []
    m, out = target.max_abs_state, []
    for l in net.layers:
        if l.input_graded and not target.graded_spikes:
            continue                       # host-injected bias: check_graded_input
        b, derived = current_bound(l, net)
        shift = net.frac_bits if l.spiking else 0
        if (b << shift) > m:
            how = (f" (worst case fan-in {_n(l.fan_in)} x |w| {_n(l.max_abs_weight)} x input "
                   f"max + |b| {_n(l.max_abs_bias)}; give max_abs_current for a tighter bound)"
                   if derived else "")
            out.append(_v("current", l, f"layer {l.name}: input current up to {_n(b)} << {shift}"
                          f" = {_n(b << shift)} overflows {target.name}'s {target.state_bits}-bit "
                          f"synaptic input (max {_n(m)}){how}"))
    return out


@severity(Severity.ERROR)
def check_decay(net: NetDesc, target: Target) -> list:
    top = (1 << target.decay_bits) - 1
    if 0 <= net.decay <= top:
        return []
    return [_v("decay", None, f"network {net.name}: decay {_n(net.decay)} (lam {net.lam:g}) does "
               f"not fit {target.name}'s {target.decay_bits}-bit decay (0..{_n(top)})")]


@severity(Severity.ERROR)
def check_graded_input(net: NetDesc, target: Target) -> list:
    out = []
    for l in net.layers:
        if not l.input_graded:
            continue
        if net.input_bits < 1:
            out.append(_v("graded_input", l, f"layer {l.name}: input_bits {net.input_bits} < 1"))
        elif target.graded_spikes and target.max_message_bits and \
                net.input_bits > target.max_message_bits:
            out.append(_v("graded_input", l, f"layer {l.name}: {net.input_bits}-bit graded input "
                          f"exceeds {target.name}'s {target.max_message_bits}-bit spike payload"))
        elif not target.graded_spikes and target.bias_mantissa_max is not None:
            b, _ = current_bound(l, net)
            lim = exact_bias_limit(target, net.frac_bits)
            if b > lim:
                out.append(_v("graded_input", l, f"layer {l.name}: {target.name} has binary "
                              f"spikes, so the host injects the graded input as a bias; |W x + B| "
                              f"up to {_n(b)} exceeds the exact bias range {_n(lim)}"))
    return out


@severity(Severity.ERROR)
def check_frac_bits(net: NetDesc, target: Target) -> list:
    if (target.kind != "loihi" or not target.frac_bits or target.programmable_neurons
            or net.frac_bits == target.frac_bits):
        return []
    return [_v("frac_bits", None, f"network {net.name}: frac_bits {net.frac_bits} differs from "
               f"{target.name}'s fixed {target.frac_bits}-bit alignment of input and threshold")]


@severity(Severity.ERROR)
def check_reset_interval(net: NetDesc, target: Target) -> list:
    r = net.reset_interval
    if not target.reset_interval_pow2 or r is None or (r >= 1 and r & (r - 1) == 0):
        return []
    up = 1 << max(0, int(r) - 1).bit_length()
    return [_v("reset_interval", None, f"network {net.name}: reset interval {_n(r)} steps is not "
               f"a power of two, which {target.name} requires (pad to {_n(up)})")]


@severity(Severity.ADVISORY)
def check_float_exact(net: NetDesc, target: Target) -> list:
    x = target.float_exact_int
    if x is None:
        return []
    f, out = net.frac_bits, []

    def over(l, what, v):
        if v > x:
            out.append(_v("float_exact", l, f"layer {l.name}: {what} {_n(v)} exceeds the exact "
                          f"integer range of {target.name}'s float32 ({_n(x)} = 2**24)"))

    for l in net.layers:
        over(l, "|weight|", l.max_abs_weight)
        b, _ = current_bound(l, net)
        if l.input_graded:
            over(l, "graded input max", (1 << net.input_bits) - 1)
        if l.spiking:
            over(l, f"threshold << {f}", l.threshold << f)
            over(l, f"|bias| << {f}", l.max_abs_bias << f)
            state = min(l.state_bound or IR_STATE_MAX, IR_STATE_MAX)
            over(l, f"|state| + (input current << {f})", state + (b << f))
        else:
            over(l, "|bias|", l.max_abs_bias)
            over(l, "readout sum", l.state_bound or net.T * b)
    return out


@severity(Severity.ERROR)
def check_fan_in(net: NetDesc, target: Target) -> list:
    """One neuron's synapses and inputs must fit one core (mapper.single_neuron_problems)."""
    return [Violation("fan_in", l.name, msg) for l in net.layers
            for msg in single_neuron_problems(l, target)]


RULES = [check_neuron_model, check_layer_kind, check_weight_magnitude, check_weight_precision, check_threshold,
         check_bias, check_state_bound, check_current, check_decay, check_graded_input,
         check_frac_bits, check_reset_interval, check_float_exact, check_fan_in]


def run_rules(net: NetDesc, target: Target) -> list:
    """Run every rule the target lists (Target.rules; targets.py gives each built-in target RULES);
    [] means the network is deployable on `target` as described. Each Violation carries its rule's
    severity. A target listing no rules is refused: an empty list would pass every network unchecked."""
    target = require_target(target)
    if not target.rules:
        raise TargetError(f"target '{target.name}' lists no rule checks (give it rules=RULES)")
    return [dataclasses.replace(v, severity=rule.severity) for rule in target.rules
            for v in rule(net, target)]
