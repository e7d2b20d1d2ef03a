"""Faults injected into the emulator's kernels, shared by the tests that show a comparison catches them."""
from __future__ import annotations


def dropping_last_conv_tap(real):
    """A stand-in for emulator_kernels.conv_runs that drops the last tap of every input pixel's last run."""
    def drop_last(*args):
        runs = real(*args)
        rlen = runs.rlen.copy()
        last = runs.ptr[1:][runs.ptr[1:] > runs.ptr[:-1]] - 1
        rlen[last] -= args[-1]                                  # one tap = Co outputs
        return runs._replace(rlen=rlen)
    return drop_last
