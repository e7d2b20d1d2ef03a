"""Export that fits by itself: build the integer graph for one choice of the free parameters, and,
when the network as calibrated is not an EXACT deployment on the target, search those choices.

What is free (everything else is the trained model):
- per spiking layer, its scale s_l = TH_l / theta (the weight precision) and its bias grid 2^z: chosen
  inside quantize() (export/quantize.py): biases rounded to the exponent's spare bits, else TH lowered
  until the biases are exact on the target, else the state/current bound halves the weights;
- the input quantization (scale and bits), when export calibrated it (not a user's --input-scale):
  the calibrated one, then one bit fewer at a time (INPUT_BITS_TRIED), each at the full range of the
  calibration data. A lower input scale shrinks every first-layer integer (bias included) without
  touching the weight precision, so it competes with lowering TH.
Every candidate is built and certified; of the EXACT ones that fit the target, the one with the highest
accuracy of the exact integer SAF form on CAL_SAMPLES training samples of the calibration dataset wins
(ties and no data: the one with most input bits, i.e. the first). The search only runs when the
calibrated network needed a change (a refusal, a NOT EXACT certificate, or a TH lowered for its biases);
otherwise export is what it always was.

When no candidate is exact, export refuses, naming the reason and the closest alternatives: the largest
T that is exact for this lam, whether lam = 1 would be, and `--approximate`. With --approximate it
writes the network at F = APPROX_FRAC_BITS (Loihi's native alignment: its decays truncate), labelled
NOT EXACT with each reason by the certificate and `meta["approximate"]`; `saf verify` then measures its
agreement with the float model (deploy/verify/approx.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


from saf.hw_targets import Severity

from saf.export.fold.sum_pool import SumPoolError, choose_pools
from saf.export.ir import DECAY_ONE, decay_for, dyadic_exponent
from saf.export.proof.certificate import certify
from saf.export.quantize import QuantizeError, quantize
from saf.export.resources import check_resources
from saf.core.errors import SafError

CAL_SAMPLES = 512          # training samples that score each candidate of the search
INPUT_BITS_TRIED = 5       # input quantizations searched below the calibrated one (one bit fewer each)
APPROX_FRAC_BITS = 6       # --approximate: F of Loihi's stock neuron (activation and threshold << 6)


# Refusals a different choice of scales, bias grid or input quantization can cure ("quantize": the
# quantizer's own refusals, e.g. too many fractional bits). Any other rule (the neuron model, layer
# kinds, fan-in, decay, cores) is reported as it is, without a search.
NUMERIC_RULES = frozenset({"bias", "threshold", "current", "state_bound", "graded_input", "float_exact",
                           "weight_magnitude", "weight_precision", "quantize"})


class ExportError(SafError, ValueError):
    """The export cannot go on; one clear line naming the file or layer. `rules`: the hardware rules
    (and "resources") behind a refusal by check_fit."""

    def __init__(self, message: str, rules=frozenset()):
        super().__init__(message)
        self.rules = frozenset(rules)


def _named(v) -> str:
    """A violation's message, naming its rule."""
    tag = f"(rule {v.rule})"
    return v.message if tag in v.message else f"{v.message} {tag}"


def check_fit(graph, target, name: str) -> tuple:
    """(ResourceReport, advisory lines) of graph on target; ExportError (one line) when it does not fit.
    ADVISORY rules (ranges) are exactness questions, answered by the certificate (a saturating layer
    makes it "not exact" with the reason) and by the ONNX builder (int64 where float32 would round);
    they do not stop the export. Everything else (neurons, formats, kinds, fit) does: a target that
    refuses the neuron model is reported first; every rule's message names the rule."""
    resources, violations = check_resources(graph, target)
    advisories = [str(v) for v in violations if v.severity == Severity.ADVISORY]
    refused = [_named(v) for v in violations if v.severity == Severity.REFUSE]
    errors = [_named(v) for v in violations if v.severity == Severity.ERROR]
    if refused or errors or not resources.fits:
        msgs = refused + list(resources.problems) + errors
        more = f" (and {len(msgs) - 1} more)" if len(msgs) > 1 else ""
        rules = {v.rule for v in violations if v.severity in (Severity.REFUSE, Severity.ERROR)}
        raise ExportError(f"{name} does not fit {target.name}: {msgs[0]}{more}",
                          rules | (set() if resources.fits else {"resources"}))
    return resources, advisories


@dataclass(frozen=True)
class InputQuant:
    """One input quantization: x_q = round(x * scale), `bits` bits, signed or not, lossless or not."""
    scale: float
    bits: int
    signed: bool
    exact: bool

    def to_dict(self) -> dict:
        return {"input_scale": self.scale, "input_bits": self.bits, "input_signed": self.signed,
                "input_exact": self.exact}


@dataclass
class Source:
    """The folded float network and what every build of it shares."""
    layers: list
    feedback: list
    target: object
    T: int
    lam: float
    theta: float
    readout_leaks: bool
    dsr_alpha: float               # DSR's firing fraction (fire at dsr_alpha * theta); 1.0 for other methods
    meta: dict
    pools: dict                    # layer name -> folded AvgPool size
    sum_pool: str
    time_varying: Optional[dict]   # the input coding of a model trained on x[t], else None
    name: str
    weight_words: int = 1          # synapse words per weight (export --synapse-words)


@dataclass
class Attempt:
    quant: InputQuant
    graph: object = None
    qrep: object = None
    folded: object = None
    pool_choice: object = None
    cert: object = None
    resources: object = None
    advisories: list = field(default_factory=list)
    error: str = ""                # why it cannot be exported (QuantizeError / ExportError), "" if it can
    rules: frozenset = frozenset()  # the rules behind `error` ("quantize" for the quantizer's own)
    accuracy: Optional[float] = None

    @property
    def searchable(self) -> bool:
        """No error, or only errors a different choice of the free parameters may cure."""
        return self.rules <= NUMERIC_RULES

    @property
    def exact(self) -> bool:
        return not self.error and self.cert.exact

    @property
    def why(self) -> str:
        return self.error or ("; ".join(self.cert.reasons) if not self.cert.exact else "")

    def lowered(self) -> list:
        """Layers whose TH came down for their biases: (name, TH before, TH after)."""
        return [(l["name"], *l["threshold_lowered_for_bias"]) for l in self.qrep.layers
                if l.get("threshold_lowered_for_bias")] if self.qrep else []


def build(src: Source, quant: InputQuant, T: Optional[int] = None, lam: Optional[float] = None,
          frac_bits: Optional[int] = None) -> Attempt:
    """One candidate: quantize, sum-pool choice, certificate, resource check. Never raises for a
    candidate that cannot be exported: the Attempt says why."""
    a = Attempt(quant)
    T = src.T if T is None else int(T)
    meta = dict(src.meta, input_exact=quant.exact)
    try:
        g, a.qrep = quantize(src.layers, src.feedback, T=T, lam=src.lam if lam is None else lam, theta=src.theta,
                             target=src.target, input_scale=quant.scale, input_bits=quant.bits,
                             input_signed=quant.signed, input_exact=quant.exact, meta=meta,
                             readout_leaks=src.readout_leaks, dsr_alpha=src.dsr_alpha, frac_bits=frac_bits,
                             weight_words=src.weight_words)
        if src.time_varying is not None:       # trained on x[t]: deploy feeds the same trains
            g.input_time_varying = True
            g.meta["input_coding"] = src.time_varying
        a.folded = g
        a.graph, a.pool_choice = choose_pools(g, src.pools, src.target, src.sum_pool)
        a.cert = certify(a.graph)
        a.resources, a.advisories = check_fit(a.graph, src.target, src.name)
    except ExportError as e:
        a.error, a.rules = str(e), e.rules
    except QuantizeError as e:
        a.error, a.rules = str(e), frozenset({"quantize"})
    except SumPoolError as e:
        a.error, a.rules = str(e), frozenset({"sum_pool"})
    return a


def input_candidates(first: InputQuant, peak: float) -> list:
    """The calibrated quantization, then INPUT_BITS_TRIED with one bit fewer each (full range of the
    calibration data, at least 2 bits)."""
    out = [first]
    for b in range(first.bits - 1, max(1, first.bits - INPUT_BITS_TRIED) - 1, -1):
        if b < 2:
            break
        levels = (1 << (b - 1)) - 1 if first.signed else (1 << b) - 1
        out.append(InputQuant(levels / (peak or 1.0), b, first.signed, False))
    return out


def needs_search(a: Attempt) -> bool:
    return bool(a.error) or not a.cert.exact or bool(a.lowered())


def exact_possible(src: Source) -> bool:
    """Only a dyadic leak can be exact; a non-dyadic lam is NOT EXACT by nature (as before)."""
    return dyadic_exponent((DECAY_ONE - decay_for(src.lam)) / DECAY_ONE) is not None


def score(a: Attempt, cal) -> Optional[float]:
    """Accuracy of the exact integer SAF form on the calibration samples (x, y), None without data."""
    if cal is None:
        return None
    from saf.export.proof.saf_int import run_saf_int

    x, y = cal
    r = run_saf_int(a.graph, a.graph.quantize_input(x), record_spikes=False)
    return float((r.readout.argmax(1) == y).mean())


def search(src: Source, first: Attempt, quants: list, cal) -> tuple:
    """(best exact Attempt or None, every Attempt in order): `first` (quants[0], already built) and the
    other quants. cal: (x float numpy, y) or None."""
    tried = [first] + [build(src, q) for q in quants[1:]]
    exact = [a for a in tried if a.exact]
    for a in exact:
        a.accuracy = score(a, cal)
    if not exact:
        return None, tried
    best = max(exact, key=lambda a: (a.accuracy if a.accuracy is not None else 0.0, -tried.index(a)))
    return best, tried


def alternatives(src: Source, quant: InputQuant) -> str:
    """The closest exact deployments of this network: the largest exact T for its lam, lam = 1."""
    lam, T, out = src.lam, src.T, []
    lo, hi = 0, T - 1                  # bisection: the largest exact T' < T (fewer steps need fewer bits)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if build(src, quant, T=mid).exact else (lo, mid - 1)
    if lo:
        out.append(f"exact at T <= {lo} for lam {lam:g}")
    if lam != 1.0 and build(src, quant, lam=1.0).exact:
        out.append(f"T = {T} needs lam = 1 (retrain as IF)")
    elif not out:
        out.append("no smaller T or lam = 1 is exact either")
    return "; ".join(out)


def refusal(src: Source, first: Attempt, tried: list) -> str:
    """One line: why no exact configuration exists, what is closest, and --approximate."""
    return (f"{src.name}: no exact configuration on {src.target.name} at T = {src.T}, lam {src.lam:g} "
            f"(searched {len(tried)}; as calibrated: {first.why.split('; ')[0]}); "
            f"{alternatives(src, first.quant)}; or export with --approximate (a NOT EXACT bundle at F = "
            f"{APPROX_FRAC_BITS}; saf verify measures its agreement with the float model)")


def fit_report(first: Attempt, best: Attempt, tried: list, float_acc: Optional[float], n_cal: int) -> dict:
    """What the search chose, for the manifest and the one- or two-line summary."""
    rows = [dict(a.quant.to_dict(), exact=a.exact, accuracy=a.accuracy, why=a.why[:200],
                 thresholds_lowered_for_bias=a.lowered()) for a in tried]
    return {"searched": len(tried), "calibrated": first.quant.to_dict(), "chosen": best.quant.to_dict(),
            "calibrated_problem": first.why or ("biases beyond the exact range at the calibrated scale: " + ", ".join(
                f"{n} TH {a:,} -> {b:,}" for n, a, b in first.lowered())),
            "thresholds_lowered_for_bias": best.lowered(),
            "bias_grid": {l["name"]: l["bias_zero_bits"] for l in best.qrep.layers if l.get("bias_zero_bits")},
            "calibration_samples": n_cal, "accuracy": best.accuracy, "float_accuracy": float_acc,
            "accuracy_change": (best.accuracy - float_acc) if best.accuracy is not None and float_acc is not None
            else None, "candidates": rows}


def format_fit(f: dict) -> str:
    c = f["chosen"]
    what = [f"input x{c['input_scale']:.6g} ({c['input_bits']} bits)"]
    what += [f"{n} TH {a:,} -> {b:,}" for n, a, b in f["thresholds_lowered_for_bias"]]
    what += [f"{n} biases on a 2^{z} grid" for n, z in f["bias_grid"].items()]
    line1 = (f"fit: as calibrated, {f['calibrated_problem'][:160]}; searched {f['searched']} "
             f"configurations, chose EXACT: " + ", ".join(what))
    if f["accuracy"] is None:
        return line1 + " (no calibration data: the most input bits)"
    return (line1 + f"\nfit: accuracy on {f['calibration_samples']} calibration (train) samples: integer "
            f"{f['accuracy']:.4f}, float {f['float_accuracy']:.4f} (change {f['accuracy_change']:+.4f})")
