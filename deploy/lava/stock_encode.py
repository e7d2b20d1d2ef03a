"""How the IR's integers are put into Lava's stock Processes, and proof that nothing is dropped.

Dense weights. Lava's fixed-point Dense (`lava.proc.dense.models.PyDenseModelBitAcc`) clips its
weights to 8 bits (`clip_weights`) and drops `8 - num_weight_bits + mixed` low bits
(`truncate_weights`): at `num_weight_bits = 8` an odd mixed-sign weight silently loses its LSB.
We choose the encoding per matrix, as a Loihi compiler would:
  * single sign: one Dense, sign mode EXCITATORY or INHIBITORY, 8 bits of magnitude (|w| <= 255);
  * mixed sign, all weights even: one MIXED Dense, num_weight_bits 8 (the dropped bit is 0);
  * mixed sign, |w| <= 127: one MIXED Dense storing 2w with weight_exp = -1 (every sum is even,
    so the dendrite's `>> 1` is exact);
  * otherwise: two Dense Processes into the same neurons, the excitatory part and the inhibitory
    part, each with the full 8-bit magnitude (Lava sums the two inputs of the InPort).
`check_dense` re-derives the weights Lava will use with Lava's own clip/truncate functions and
refuses any matrix whose encoding would change a single weight.

Bias: B << 6 is `bias_mant << bias_exp` with bias_mant in [-4096, 4095], bias_exp 6 (or 7 for
even B beyond that). Conv: Lava's Conv is a true convolution on (W, H, C) inputs with weights
(C_out, KW, KH, C_in); the IR's cross-correlation kernel [C_out, C_in, kh, kw] is transposed and
flipped, and feature maps are permuted between the IR's C, H, W order and Lava's W, H, C order.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

from saf.hw_targets.words import WORD_SHIFT, split_words
from saf.core.errors import SafError

WEIGHT_BITS = 8                   # Loihi's synapse word (num_weight_bits)
BIAS_MANT_MIN, BIAS_MANT_MAX = -4096, 4095     # lava LIF: bias_mant is a signed 13-bit integer
ACT_SHIFT = 6                     # lava LIF: act_shift = vth_shift = 6 (the stock neuron's F)


class EncodingError(SafError, ValueError):
    """An IR value the stock Lava Processes cannot hold exactly (one line naming the layer)."""


@dataclass(frozen=True)
class DenseCode:
    """One stock Dense Process: stored weights and the parameters Lava's model reads."""
    weights: np.ndarray           # int32, what is passed to Dense(weights=...)
    sign_mode: SignMode
    num_weight_bits: int
    weight_exp: int
    part: str                     # "all" | "excitatory" | "inhibitory" (two words: "high word all", ...)


def lava_effective_weights(code: DenseCode) -> np.ndarray:
    """The weights Lava's fixed-point Dense multiplies with (its own clip and truncation), as an
    int64 matrix scaled by 2**weight_exp (exact where the code's sums are multiples of 2**-exp)."""
    w = clip_weights(code.weights, code.sign_mode, num_bits=WEIGHT_BITS)
    w = truncate_weights(w, code.sign_mode, code.num_weight_bits).astype(np.int64)
    return w << code.weight_exp if code.weight_exp >= 0 else w >> -code.weight_exp


def encode_dense(w: np.ndarray, name: str) -> list:
    """DenseCodes whose Lava outputs sum to w @ s exactly for every integer input s."""
    w = np.asarray(w, dtype=np.int64)
    if w.size and int(np.abs(w).max()) > (1 << WEIGHT_BITS) - 1:
        raise EncodingError(f"layer {name}: weight {int(np.abs(w).max())} exceeds the 8-bit synapse "
                            f"magnitude 255")
    pos, neg = w.size and w.max() > 0, w.size and w.min() < 0
    if not (pos and neg):
        mode = SignMode.INHIBITORY if neg else SignMode.EXCITATORY
        codes = [DenseCode(w.astype(np.int32), mode, WEIGHT_BITS, 0, "all")]
    elif not (w % 2).any():
        codes = [DenseCode(w.astype(np.int32), SignMode.MIXED, WEIGHT_BITS, 0, "all")]
    elif int(np.abs(w).max()) <= 127:
        codes = [DenseCode((2 * w).astype(np.int32), SignMode.MIXED, WEIGHT_BITS, -1, "all")]
    else:
        codes = [DenseCode(np.where(w > 0, w, 0).astype(np.int32), SignMode.EXCITATORY, WEIGHT_BITS, 0,
                           "excitatory"),
                 DenseCode(np.where(w < 0, w, 0).astype(np.int32), SignMode.INHIBITORY, WEIGHT_BITS, 0,
                           "inhibitory")]
    check_dense(codes, w, name)
    return codes


def encode_words(w: np.ndarray, name: str, words: int = 1) -> list:
    """encode_dense of one synapse word, or of each word of a two-word layer (hw_targets/words.py): the high
    word's Dense Processes shift their sums by WORD_SHIFT more (weight_exp + 7), the low word's are as they
    are, all into the same neurons; check_dense proves the sum of every Process's effective weights is w."""
    if int(words) == 1:
        return encode_dense(w, name)
    try:
        hi, lo = split_words(w)
    except ValueError as e:
        raise EncodingError(f"layer {name}: {e}") from None
    codes = [replace(c, weight_exp=c.weight_exp + WORD_SHIFT, part=f"high word {c.part}") for c in encode_dense(hi, name)]
    codes += [replace(c, part=f"low word {c.part}") for c in encode_dense(lo, name)]
    check_dense(codes, np.asarray(w, dtype=np.int64), name)
    return codes


def check_dense(codes: list, w: np.ndarray, name: str) -> None:
    """Raise EncodingError unless Lava's effective weights of `codes` add up to w exactly."""
    for c in codes:
        if c.weight_exp < 0 and (np.asarray(c.weights) % (1 << -c.weight_exp)).any():
            raise EncodingError(f"layer {name}: weight_exp {c.weight_exp} would floor odd sums")
    got = sum(lava_effective_weights(c) for c in codes)
    bad = np.argwhere(got != w)
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise EncodingError(f"layer {name}: Lava's Dense would hold weight {int(got[i, j])} instead of "
                            f"{int(w[i, j])} at [{i}, {j}] ({len(bad)} weights changed)")


def encode_bias(bias: np.ndarray, name: str) -> tuple:
    """(bias_mant, bias_exp) int arrays with bias_mant << bias_exp == bias << 6 exactly."""
    b = np.asarray(bias, dtype=np.int64)
    fits6 = (b >= BIAS_MANT_MIN) & (b <= BIAS_MANT_MAX)
    fits7 = (b % 2 == 0) & (b // 2 >= BIAS_MANT_MIN) & (b // 2 <= BIAS_MANT_MAX)
    if not (fits6 | fits7).all():
        k = int(np.argmax(~(fits6 | fits7)))
        raise EncodingError(f"layer {name}: bias {int(b[k])} (neuron {k}) is not bias_mant << bias_exp "
                            f"with a 13-bit mantissa and F = 6")
    exp = np.where(fits6, ACT_SHIFT, ACT_SHIFT + 1)
    return np.where(fits6, b, b // 2), exp


def conv_weights(k: np.ndarray) -> np.ndarray:
    """IR kernel [C_out, C_in, kh, kw] (cross-correlation) -> Lava Conv weight [C_out, KW, KH, C_in]
    (true convolution: flipped in both spatial axes)."""
    return np.ascontiguousarray(np.asarray(k).transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]).astype(np.int32)


def whc_shape(chw: tuple) -> tuple:
    c, h, w = (int(d) for d in chw)
    return (w, h, c)


def chw_to_whc(x: np.ndarray, chw: tuple) -> np.ndarray:
    """[..., C*H*W] (IR order) -> [..., W, H, C] (Lava's conv layout)."""
    x = np.asarray(x)
    return x.reshape(*x.shape[:-1], *chw).swapaxes(-1, -3)


def whc_to_chw(x: np.ndarray, chw: tuple) -> np.ndarray:
    """[..., W, H, C] or [..., W*H*C] (Lava order) -> [..., C*H*W] (IR order)."""
    x = np.asarray(x)
    c, h, w = chw
    lead = x.shape[:-3] if x.shape[-3:] == (w, h, c) else x.shape[:-1]
    return x.reshape(*lead, w, h, c).swapaxes(-1, -3).reshape(*lead, c * h * w)
