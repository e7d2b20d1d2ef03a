"""PyConvModelFixedIm2col: Lava's own fixed-point Conv model, its convolution done as one product.

A ProcessModel (no Process of its own) for Lava's stock `lava.proc.conv.process.Conv`. It
subclasses Lava 0.10.0's `lava.proc.conv.models.PyConvModelFixed` and keeps its run_spk line for
line (send the previous step's buffer, receive s_in, convolve, clamp to 24 bits with Lava's
`signed_clamp`); only the call `lava.proc.conv.utils.conv` is replaced by `conv_im2col`, because
Lava's `conv_scipy` loops in Python over every (output, input) channel pair (one scipy convolve2d
each: 512 calls per step for a 16 -> 32 channel layer) and was the stock backend's largest cost.

conv_im2col computes the same integers: Lava's true convolution (kernel flipped in both spatial
axes), padding, stride and dilation, in float64 like conv_scipy (exact: every product and sum
stays far below 2^53 for 24-bit messages and 8-bit weights), then `.astype(weight.dtype)` as
`utils.conv` does. tests/test_lava_stock.py compares it with `lava.proc.conv.utils.conv` on odd
shapes, strides, paddings, dilations and graded inputs. Grouped convolutions go to Lava's own
function. The backend (deploy/lava/stock.py) selects this model through `exception_proc_model_map`.
"""
from __future__ import annotations

import numpy as np
from lava.proc.conv import utils
from lava.proc.conv.models import PyConvModelFixed

REPLACED = ("lava.proc.conv.utils.conv",)


def conv_im2col(input_: np.ndarray, weight: np.ndarray, kernel_size, stride, padding, dilation,
                groups: int) -> np.ndarray:
    """lava.proc.conv.utils.conv(...) for groups == 1: input [W, H, C_in], weight [C_out, KW, KH,
    C_in] -> [W', H', C_out] in weight's dtype."""
    if int(groups) != 1:
        return utils.conv(input_, weight, kernel_size, stride, padding, dilation, groups)
    kw, kh = (int(v) for v in kernel_size)
    dw, dh = (int(v) for v in dilation)
    sw, sh = (int(v) for v in stride)
    pw, ph = (int(v) for v in padding)
    c_out, c_in = weight.shape[0], weight.shape[-1]
    wd = np.zeros((c_out, dw * (kw - 1) + 1, dh * (kh - 1) + 1, c_in))
    wd[:, ::dw, ::dh, :] = weight
    flipped = wd[:, ::-1, ::-1, :]                      # true convolution, as scipy's convolve2d
    x = np.pad(input_, ((pw, pw), (ph, ph), (0, 0))).astype(np.float64)
    win = np.lib.stride_tricks.sliding_window_view(x, flipped.shape[1:3], axis=(0, 1))[::sw, ::sh]
    ow, oh = win.shape[:2]                              # win: [W', H', C_in, KWd, KHd]
    cols = win.reshape(ow * oh, -1)
    mat = flipped.transpose(3, 1, 2, 0).reshape(-1, c_out)
    return (cols @ mat).reshape(ow, oh, c_out).astype(weight.dtype)


class PyConvModelFixedIm2col(PyConvModelFixed):
    """Lava's fixed-point Conv model; the same integers from one matrix product per step."""

    def run_spk(self) -> None:
        if self.a_buf is None:
            self.a_buf = np.zeros_like(self.a_out.shape)
        self.a_out.send(self.a_buf)
        if self.num_message_bits.item() > 0:
            s_in = self.s_in.recv()
        else:
            s_in = self.s_in.recv().astype(bool)
        a_out = conv_im2col(s_in, self.weight, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.groups[0])
        self.a_buf = self.clamp_precision(a_out)
