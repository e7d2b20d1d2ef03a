"""Synapse words per weight: a weight held in one synapse word, or split across two connections into the
same neurons (Loihi 2), W = hi * 2^WORD_SHIFT + lo.

Two words: the high word is a Dense (or Conv) connection with weight_exp = WORD_SHIFT, the low word one
with weight_exp = 0; each is an ordinary mixed-sign 8-bit synapse word on the chip's even grid (|word| <=
254, Lava drops the lowest bit of mixed-sign words: lava/utils/weightutils.py truncate_weights). The
dendrite adds both connections' currents (Lava sums every connection into an InPort). The high word is
even, so hi * 2^7 is a multiple of 256, and the low word's 255 even values cover every residue: every even
W with |W| <= 254 * 2^7 + 254 = 32,766 has exactly one such split with the high word rounded to the
nearest multiple of 256 (clipped to +-254). Twice the synapses' memory (hw_targets/mapper.py).

Plain values only (hw_targets is a leaf): export/ir.py Layer.weight_words holds the count per layer and
applies to every synapse into the layer (feed-forward and feedback: they share the layer's scale).
"""
from __future__ import annotations

import numpy as np

WEIGHT_WORDS = (1, 2)          # the allowed synapse words per weight (Layer.weight_words, --synapse-words)
WORD_SHIFT = 7                 # the high word's weight_exp
WORD_MAX = 254                 # each word: an even mixed-sign 8-bit synapse value


def words_max(words: int, word_max: int = WORD_MAX) -> int:
    """Largest |W| `words` synapse words hold (word_max per word): 254 for one, 32,766 for two."""
    check_words(words)
    return word_max if words == 1 else word_max * (1 << WORD_SHIFT) + word_max


def check_words(words) -> int:
    if isinstance(words, bool) or not isinstance(words, (int, np.integer)) or int(words) not in WEIGHT_WORDS:
        raise ValueError(f"synapse words per weight must be one of {WEIGHT_WORDS}, got {words!r}")
    return int(words)


def split_words(w: np.ndarray) -> tuple:
    """(hi, lo) int64 arrays with hi * 2^WORD_SHIFT + lo == w, both even and within +-WORD_MAX.
    Raises ValueError for an odd weight or one beyond words_max(2)."""
    w = np.asarray(w, dtype=np.int64)
    top = words_max(2)
    if w.size and (int(np.abs(w).max()) > top or (w % 2).any()):
        bad = w[(np.abs(w) > top) | (w % 2 != 0)]
        raise ValueError(f"weight {int(bad.flat[0])} is not an even integer within +-{top} (two synapse words)")
    step = 2 << WORD_SHIFT                                    # hi even: hi * 2^7 is a multiple of 256
    hi = 2 * np.clip(np.floor(w / step + 0.5).astype(np.int64), -(WORD_MAX // 2), WORD_MAX // 2)
    lo = w - (hi << WORD_SHIFT)
    return hi, lo
