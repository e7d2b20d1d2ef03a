"""The exactness certificate: does the integer LIF form (Lava, emulator, ONNX) compute exactly the
integer SAF form (the training form on the quantized weights)? Derived from a Graph alone, so
`saf verify` re-derives it from a bundle's weights instead of trusting what export wrote.

Conditions (docs/design.md#exactness-and-the-certificate), each a named check with a one-line reason:
- leak:        the 12-bit decay is lam_q = 2^-k exactly (a non-dyadic lam truncates at every step);
- frac_bits:   F >= k (T - 1) per layer, so every decay over T steps drops no bit;
- state_24bit: worst-case |V| (state_bound.py, including the initial potential |v0|) <= 2^23 - 1
               per layer, and TH << F fits too (a sum-pooled layer's inputs are counts up to k^2:
               Graph.layer_input_max; its bound equals the folded layer's);
- initial_potential (layers with Layer.v0 != 0, DSR's alpha firing): v0 is a multiple of 2^(kT), so
               lam^t v0 is an integer for t <= T and no truncating decay of it drops a bit;
- readout:     the readout integrator's worst case |R[T]| (state_bound with its leak and F_r) fits the
               24-bit state of a compartment (a first-spike readout, R in [0, T] by construction, has no
               row: only a note);
- readout_leak (leaking readouts only): D_r is the network's dyadic decay 2^-k and F_r >= k(T-1), so
               R[T] = (sum_t lam^(T-t) (W s_N[t] + B)) << F_r is an integer and no truncation of the
               leak drops a bit: the deployed readout is the trained one, sum_t lam^(T-t) o[t];
- current_reg (every neuron model that has one: the export target's, hw_targets
               Target.current_register_bits, and in verify every compared backend's, BackendSpec
               .current_register, e.g. `lava` on Lava's stock LIF whatever the target): the synaptic
               input enters a register u as (W s_in + feedback) << shift, which WRAPS (Lava/Loihi: 24
               bits), so its worst case must stay <= 2^(bits-1) - 1 per spiking layer. The bias is not
               in u: Loihi adds it to v as bias_mant << bias_exp. One row per layer and register, the
               detail naming who holds it;
- convention:  every backend runs every spiking layer's own tie comparison and reset (Layer.compare,
               Layer.reset; default: fire when V >= TH << F, subtractive reset; SAF: H(0) = 1): a backend
               declares one fixed Convention or the set of modes it implements per layer (export/ir.py
               declared_mode). Derived from the declarations passed in (verify: the backends it
               compares; export: the forms it writes, saf-int and ONNX). A declaration, not a proof: nothing
               is run here (verify's pairs measure it), so the row reads "declared" and prints [decl] when it
               holds; it fails where a backend declares a mode other than a layer's (a fixed neuron).
- current_decay (two-state layers of a graph that has a SAF form: the spec's synaptic current "alpha",
               snnTorch's Synaptic; export/quantize.py): with (4095 - du) / 4096 = p / 2^j (current_decay_bits),
               F >= max(j, k) (T - 1) makes every decay of U and of V drop only zero bits, so the LIF form's
               U and V are the exact ones and saf-int's accumulation (saf_int.py: the current's kernel
               commutes with the leak's) is the same network;
- initial_current (two-state layers with Layer.u0, a bias inside snnTorch Synaptic's current; export/quantize.py):
               u0 is a multiple of 2^G, G = max(j T, j + k (T - 1)), so its share of U, u0 alpha^t, and of V
               (decayed T - t' more times by lam after entering at t') are integers: no truncation drops a bit.
               current_reg and state_24bit count it (state_bound.py: |U| gains max |u0|, V's constant drive is
               max(|u0 + (B << F)|, |B << F|) per neuron);
- training_form (FP graphs, meta "fp", or a first-spike readout; docs/methods.md#fp-deployment): there is no integer SAF form of such a network, and FP trains in
               continuous time, so this row is never ok: "approximate: continuous-time training,
               see verify's dt table". The leak/frac_bits/initial_potential rows (SAF exactness)
               are then not derived; state_24bit and current_reg use the carried current's bound
               (state_bound.py), and the integer forms must still agree bit for bit (verify).
- grid-trained runs (Graph.meta "trained_on_grid", issue 28): the statement is "the deployed network ==
               the trained model", and the trained model IS the integer network: the rows on_grid, grid_rules,
               exact_sum and grid_modes (export/proof/grid_rows.py, made by the caller from the run's checkpoint,
               a failing row where one is missing) replace the rows about the float SAF form. leak, frac_bits,
               initial_potential, current_decay, initial_current and readout_leak become notes (not needed: the
               forward decays with the same truncation), and state_24bit only requires TH << F to fit: V may
               saturate, because the forward saturates with the deployed rule (grid_rules). Certificate.saf_form
               still says whether the SAF form (saf-int) equals the LIF form too (verify's saf-int pairs).
Also informational: whether the trained lam is representable (lam_q == lam) and whether the input
quantization was lossless; these concern float-vs-integer accuracy, not LIF-vs-SAF exactness.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from saf.export.ir import (DECAY_ONE, IR_CONVENTION, STATE_MAX, Graph, current_decay_bits, declared_mode,
                           dyadic_exponent, modes_text)
from saf.export.proof.state_bound import (current_state_bound, initial_current_max, initial_drive_max,
                                          layer_current_bound, owed_subtraction, state_bound, two_state_bound)


class CurrentRegister(NamedTuple):
    """A neuron model's wrapping input register u: its width and the shift its input enters with."""
    bits: int
    shift: int


@dataclass
class Check:
    check: str
    layer: str
    ok: bool
    detail: str


GRID_ROWS = ("on_grid", "grid_rules", "exact_sum", "grid_modes")   # required of a grid run (grid_rows.py)
SAF_ROWS = ("leak", "frac_bits", "initial_potential", "current_decay", "initial_current", "readout_leak")
DECLARED = ("convention",)      # rows that restate what backends declare (nothing derived or run): [decl] when ok


@dataclass
class Certificate:
    exact: bool
    checks: list = field(default_factory=list)
    info: list = field(default_factory=list)
    saf_form: bool = None        # the LIF form also equals the integer SAF form (None: same as exact)
    grid: bool = False           # a grid-trained run: exact means deployed == trained model

    def __post_init__(self):
        if self.saf_form is None:
            self.saf_form = self.exact

    @property
    def reasons(self) -> list:
        return [f"{c.check} ({c.layer}): {c.detail}" for c in self.checks if not c.ok]

    def to_dict(self) -> dict:
        return {"exact": self.exact, "saf_form": self.saf_form, "grid": self.grid, "reasons": self.reasons,
                "checks": [asdict(c) for c in self.checks], "info": list(self.info)}

    def format(self) -> str:
        what = ("deployed network == trained grid model bit for bit" + ("; LIF form == SAF form too" if
                self.saf_form else "")) if self.grid else "LIF form == SAF form bit for bit"
        head = f"certificate: EXACT ({what})" if self.exact else \
            "certificate: NOT EXACT -- " + "; ".join(self.reasons)
        rows = [f"  [{('decl' if c.check in DECLARED else 'ok') if c.ok else 'NO'}] {c.check:<12} {c.layer:<10} "
                f"{c.detail}" for c in self.checks]
        return "\n".join([head, *rows, *[f"  note: {i}" for i in self.info]])


def _readout_leak(D_r: int, D: int, F_r: int, T: int, name: str) -> Check:
    k = dyadic_exponent((DECAY_ONE - D_r) / DECAY_ONE)
    if D_r != D:
        return Check("readout_leak", name, False, f"readout decay {D_r} differs from the network's {D}")
    if k is None:
        return Check("readout_leak", name, False, f"readout leaks with {DECAY_ONE - D_r}/4096 (decay {D_r}), "
                     f"not a power of two: its truncating decay drifts from sum_t lam^(T-t) o[t]")
    need = k * (T - 1)
    ok = F_r >= need
    return Check("readout_leak", name, ok,
                 f"leaks with lam_q = 2^-{k} (decay {D_r}); F_r = {F_r} {'>=' if ok else '<'} k(T-1) = {need}"
                 + (": R[T] = sum_t lam^(T-t) (W s[t] + B) << F_r exactly" if ok else
                    ": the last decays drop bits of the trained sum_t lam^(T-t) o[t]"))


def export_conventions() -> dict:
    """The conventions declared by the forms export itself writes: the SAF form and the ONNX model."""
    from saf.export.proof.onnx_exact import MODES as ONNX
    from saf.export.proof.saf_int import MODES as SAF_INT
    return {"saf-int": SAF_INT, "onnx": ONNX}


def convention_check(conventions: dict, graph: Graph = None) -> Check:
    """The convention row: every backend must run every spiking layer's own (compare, reset) (export/ir.py
    `declared_mode`: a fixed declaration must equal it, a set must hold it). Without a graph: the IR's
    default modes."""
    if not conventions:
        return Check("convention", "all", False, "no backend declared its tie comparison and reset")
    layers = [(l.name, l.mode) for l in graph.spiking_layers] if graph is not None else [("", IR_CONVENTION)]
    bad = []
    for n, decl in conventions.items():
        for name, mode in layers:
            ran = declared_mode(decl, mode)
            on = f" on layer {name}" if name else ""
            if ran is None:
                bad.append(f"{n} cannot run{on} '{mode}' (it runs {modes_text(decl)})")
            elif ran != mode:
                bad.append(f"{n} declares '{ran}'{on}, the IR says '{mode}'")
            else:
                continue
            break                                  # one line per backend: its first layer that differs
    if bad:
        return Check("convention", "all", False, "declared: " + "; ".join(bad))
    distinct = sorted({str(m) for _, m in layers})
    says = f"the IR's '{distinct[0]}'" if len(distinct) == 1 else \
        "each layer's own modes (" + ", ".join(f"{n}: '{m}'" for n, m in layers) + ")"
    return Check("convention", "all", True, f"declared, not run: {', '.join(conventions)} declare {says}")


def initial_potential_check(layer, k: int, T: int) -> Check:
    """v0 decays T times: exact when 2^(kT) divides it (lam = 2^-k)."""
    v0, need = int(layer.v0), k * int(T)
    ok = v0 % (1 << need) == 0
    return Check("initial_potential", layer.name, ok,
                 f"v0 = {v0} is {'' if ok else 'not '}a multiple of 2^(kT) = 2^{need}"
                 + ("" if ok else ": its decay truncates, the LIF state drifts from the exact SAF form"))


def has_saf_form(graph: Graph) -> bool:
    """False for an FP network (continuous-time training, meta "fp") or one with a first-spike readout: no
    SAF form. Two-state layers of any other graph (the spec's synaptic current) have one (saf_int.py)."""
    return not (graph.readout.first_spike or graph.meta.get("fp")
                or (any(l.two_state for l in graph.spiking_layers) and any(int(l.v0) for l in graph.spiking_layers)))


def current_decay_check(layer, k: int, T: int) -> Check:
    """A two-state layer's U and V decay exactly over T steps: F >= max(j, k) (T - 1) (current_decay_bits)."""
    j, F = current_decay_bits(int(layer.du)), int(layer.frac_bits)
    need = max(j, k) * (T - 1)
    return Check("current_decay", layer.name, F >= need,
                 f"current decay (4095 - du)/4096 = {4095 - int(layer.du)}/4096 = p/2^{j}: F = {F} "
                 f"{'>=' if F >= need else '<'} max(j, k)(T-1) = {need}"
                 + ("" if F >= need else ": the decays of the current register U drop bits"))


def initial_current_check(layer, k: int, T: int) -> Check:
    """U[0] = u0 (Layer.u0) decays exactly: 2^G divides every u0, G = max(jT, j + k(T-1)) (module docstring)."""
    j = current_decay_bits(int(layer.du))
    need = max(j * int(T), j + k * (int(T) - 1))
    u0 = layer.full_initial_current()
    bad = u0[u0 % (1 << need) != 0]
    ok = bad.size == 0
    return Check("initial_current", layer.name, ok,
                 f"u0 (max |u0| = {int(np.abs(u0).max(initial=0)):,}) "
                 + (f"is a multiple of 2^max(jT, j+k(T-1)) = 2^{need}: U[0] decays exactly into U and V" if ok else
                    f"is not a multiple of 2^max(jT, j+k(T-1)) = 2^{need} (u0 = {int(bad[0])}): its decays truncate, "
                    f"the current drifts from the exact one"))


def training_form_check(graph: Graph) -> Check:
    """The row an FP (two-state / first-spike) graph gets instead of the SAF exactness rows."""
    if graph.meta.get("fp"):
        why = ("approximate: continuous-time training (FP), see verify's dt table; the integer forms "
               "(emulator, ONNX, Lava) must still agree bit for bit")
    else:
        why = ("approximate: two-state layers / a first-spike readout have no integer SAF (training) form; "
               "the integer forms must still agree bit for bit")
    return Check("training_form", "all", False, why)


def certify(graph: Graph, conventions: dict = None, registers: dict = None, extra: tuple = ()) -> Certificate:
    """conventions: backend name -> declared Convention (default: export_conventions()).
    registers: who -> CurrentRegister of the neuron models that run the graph (default: the export
    target's, target_registers(graph)); verify passes the target's plus every compared backend's."""
    checks, info = [], []
    T, D = int(graph.T), int(graph.decay)
    lam_q = graph.lam_q
    saf = has_saf_form(graph)
    grid, saturates = bool(graph.meta.get("trained_on_grid")), False
    k = dyadic_exponent(lam_q) if saf else None
    if not saf:
        checks.append(training_form_check(graph))
    elif k is None:
        checks.append(Check("leak", "all", False,
                            f"lam_q = {DECAY_ONE - D}/4096 = {lam_q:.6g} is not a power of two: the 12-bit "
                            f"decay truncates every step, so the LIF state drifts from the exact SAF form"))
    else:
        checks.append(Check("leak", "all", True, f"lam_q = 2^-{k} (decay D = {D}): dyadic"))
    if saf and abs(lam_q - graph.lam) > 0:
        info.append(f"trained lam {graph.lam} is stored as {lam_q:.6g} on the 12-bit decay (float-vs-integer "
                    f"accuracy may change; LIF-vs-SAF exactness is about lam_q)")
    regs = _group_registers(target_registers(graph) if registers is None else registers)
    for i, layer in enumerate(graph.spiking_layers):
        F = int(layer.frac_bits)
        if k is not None:
            need = k * (T - 1)
            checks.append(Check("frac_bits", layer.name, F >= need,
                                f"F = {F} {'>=' if F >= need else '<'} k(T-1) = {k}*{T - 1} = {need}"
                                + ("" if F >= need else ": the last decays drop bits")))
        v = _state_bound(graph, i)
        th = int(layer.threshold) << F
        if int(layer.v0) and k is not None:
            checks.append(initial_potential_check(layer, k, T))
        if layer.two_state and k is not None:
            checks.append(current_decay_check(layer, k, T))
        if layer.has_initial_current and k is not None:
            checks.append(initial_current_check(layer, k, T))
        ok = v <= STATE_MAX and 0 < th <= STATE_MAX
        detail = f"worst |V| = {v:,} {'<=' if v <= STATE_MAX else '>'} 2^23-1 = {STATE_MAX:,}; TH<<F = {th:,}"
        if th <= 0:
            detail += " (threshold must be positive)"
        elif th > STATE_MAX:
            detail += " exceeds the 24-bit state (the neuron could never fire)"
        elif v > STATE_MAX and not saf:
            detail += ": V can clip at 2^23-1 (alike in every integer form; a deviation from the continuous model)"
        elif v > STATE_MAX and grid:
            detail += (": V can saturate, accepted: the trained forward saturates exactly as the deployed network "
                       "does (grid_rules)")
        elif v > STATE_MAX:
            detail += ": the state can saturate where the SAF form does not"
        saturates = saturates or v > STATE_MAX
        checks.append(Check("state_24bit", layer.name, (0 < th <= STATE_MAX) if grid else ok, detail))
        for reg, who in regs:
            checks.append(current_register_check(graph, i, reg, who))
    _readout_rows(graph, checks, info)
    if conventions is None:          # export's own forms; saf-int has no form of an FP network
        conventions = {n: c for n, c in export_conventions().items() if saf or n != "saf-int"}
    checks.append(convention_check(conventions, graph))
    checks.extend(extra)             # rows only the caller can decide (a grid run's: grid_rows.py)
    if graph.meta.get("input_exact") is False:
        info.append(f"input quantized with scale {graph.input_scale:.6g} to {graph.input_bits} bits (lossy)")
    saf_form = saf and not saturates and all(c.ok for c in checks if c.check in SAF_ROWS)
    if grid:
        checks, notes = _grid_statement(checks)
        info.extend(notes)
    return Certificate(all(c.ok for c in checks), checks, info, saf_form=saf_form and all(c.ok for c in checks),
                       grid=grid)


def _state_bound(graph: Graph, i: int) -> int:
    """Worst |V| of spiking layer i over the T steps (two-state layers: through their current register)."""
    layer, T, D = graph.spiking_layers[i], int(graph.T), int(graph.decay)
    F = int(layer.frac_bits)
    fb = [f.weight for f in graph.feedback_into(i)]
    signed = graph.input_signed and i == 0
    if not layer.two_state:
        cur = layer_current_bound(layer.weight, layer.bias, fb, graph.layer_input_max(i), signed)
        return state_bound(cur, F, D, T, int(layer.v0), owed_subtraction(layer))
    syn = layer_current_bound(layer.weight, np.zeros(1, np.int64), fb, graph.layer_input_max(i), signed)
    drive = initial_drive_max(layer.full_bias(), layer.full_initial_current(), F) \
        if layer.has_initial_current else None
    return two_state_bound(syn, int(np.abs(layer.bias).max(initial=0)), F, int(layer.du), D, T,
                           abs(int(layer.v0)) + owed_subtraction(layer), drive)


def _readout_rows(graph: Graph, checks: list, info: list) -> None:
    """The readout's bound row (or, first-spike, a note) and its leak row when it decays, appended in place."""
    ro, T, D = graph.readout, int(graph.T), int(graph.decay)
    D_r, F_r = int(ro.decay), ro.readout_shift
    if ro.first_spike:                 # R = T + 1 - first step: in [0, T] by construction, nothing to check
        info.append(f"first-spike readout {ro.name}: R = T + 1 - first spike step, in [0, T = {T}] (no bound to check)")
    else:
        r = state_bound(layer_current_bound(ro.weight, ro.bias, in_max=ro.pool_gain), F_r, D_r, T)
        checks.append(Check("readout", ro.name, r <= STATE_MAX,
                            f"worst |R[T]| = {r:,} {'<=' if r <= STATE_MAX else '>'} 2^23-1"))
    if D_r:
        checks.append(_readout_leak(D_r, D, F_r, T, ro.name))


def _grid_statement(checks: list) -> tuple:
    """(rows, notes) of a grid-trained run: the SAF-form rows become notes, every GRID_ROWS row is required."""
    rows = [c for c in checks if c.check not in SAF_ROWS]
    notes = [f"{c.check} ({c.layer}) not needed: the trained model is the integer network, decaying with the same "
             f"truncation (grid_rules); for the float SAF form it {'holds' if c.ok else 'fails'}: {c.detail}"
             for c in checks if c.check in SAF_ROWS]
    have = {c.check for c in rows}
    rows += [Check(r, "all", False, "not derived: a grid-trained run's row needs its checkpoint "
                   "(export/pipeline/grid.py forward_rows, source_grid_rows)") for r in GRID_ROWS if r not in have]
    return rows, notes


def target_registers(graph: Graph) -> dict:
    """{"target <name>": CurrentRegister} of the graph's target neuron's input register, or {}."""
    from saf.hw_targets import TargetError, get_target

    try:
        t = get_target(graph.target)
    except TargetError:
        return {}
    if t.current_register_bits is None:
        return {}
    return {f"target {t.name}": CurrentRegister(int(t.current_register_bits), int(t.frac_bits))}


def _group_registers(registers: dict) -> list:
    """[(CurrentRegister, "who, who")]: one row per distinct register, naming everyone holding it."""
    out: dict = {}
    for who, reg in registers.items():
        out.setdefault(CurrentRegister(int(reg[0]), int(reg[1])), []).append(who)
    return [(reg, ", ".join(names)) for reg, names in out.items()]


def current_register_check(graph: Graph, i: int, reg: tuple, who: str = "") -> Check:
    """Spiking layer i: worst |W s_in + sum W_fb s_fb| << shift must not wrap the signed register."""
    bits, shift = reg
    layer = graph.spiking_layers[i]
    a = layer_current_bound(layer.weight, np.zeros(1, np.int64), [f.weight for f in graph.feedback_into(i)],
                            graph.layer_input_max(i), graph.input_signed and i == 0)
    top = (1 << (bits - 1)) - 1
    u0 = initial_current_max(layer)                  # state units (<< F): in the register's units, << shift
    u0 = -((-u0 << int(shift)) >> int(layer.frac_bits))
    u = current_state_bound(a, shift, int(layer.du), int(graph.T)) + u0      # du = 4095: a << shift
    ok = u <= top
    what = f"worst |W s_in| << {shift}" if not layer.two_state else \
        f"worst |U| (|W s_in| << {shift} carried with ({4095 - int(layer.du)}/4096)^j, du = {int(layer.du)}" \
        + (f", plus |u0| = {u0:,})" if u0 else ")")
    holder = f" ({who})" if who else ""
    return Check("current_reg", layer.name, ok,
                 f"{what} = {u:,} {'<=' if ok else '>'} 2^{bits - 1}-1 = {top:,}"
                 + ("" if ok else f": the {bits}-bit input register u{holder} wraps (the LIF form does not)")
                 + (f"; register of {who}" if ok and who else ""))
