"""The integer weight grid a target's synapses hold (largest weight, step) and QuantizeError, the refusal
of a network the target cannot represent. Below quantize.py and fold/ (the FP fold quantizes onto the
same grid), so both import it from here."""
from __future__ import annotations

from saf.core.errors import SafError
from saf.hw_targets.words import check_words, words_max


class QuantizeError(SafError, ValueError):
    """The network cannot be represented on the target; the message names the layer."""


def weight_grid(target, words: int = 1) -> tuple:
    """(largest integer weight, step) the target's synapses hold for mixed-sign weights, in `words` synapse
    words per weight (hw_targets/words.py: two words W = hi * 2^7 + lo, even words: max 32,766, step 2)."""
    words = check_words(words)
    if words > target.weight_words_max:
        raise QuantizeError(f"{target.name} holds {target.weight_words_max} synapse word(s) per weight, not {words}")
    wmax = target.weight_magnitude_max
    if wmax is None:                       # ONNX: any integer; keep 8-bit weights like the chip
        return 127, 1
    bits = target.weight_bits
    if bits:
        step = max(1, (wmax + 1) >> (bits - 1))   # Loihi 8-bit incl. sign: step 2, max 254
        return words_max(words, (wmax // step) * step), step
    return words_max(words, wmax), 1
