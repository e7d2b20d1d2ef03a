"""Deterministic activation-memory measurement: bytes of tensors autograd saves for backward.

Each backward frees its graph, so the peak over graphs is what a method must hold at once
(SAF/OTTT: one step's graph; BPTT: the whole sequence). Parameters are not activations and are
excluded; a tensor saved by several ops is counted once (by storage pointer and size). The meter keeps
each counted tensor alive until graph_freed(), so a freed storage's address cannot be reused by another
saved tensor and merged with it (which made the count depend on the allocator's history)."""
from __future__ import annotations

import torch


class SavedTensorMeter:
    """tag: optional callable naming where a saved tensor comes from (`saf bench train --profile`: the
    phase and layer being run); then `by_tag` holds the current graph's bytes per tag and `peak_by_tag`
    that split at the peak."""

    def __init__(self, params=(), tag=None):
        self._param_ptrs = {p.data_ptr() for p in params}
        self._seen: set = set()
        self._held: list = []
        self.current = 0
        self.peak = 0
        self._ctx = None
        self._tag = tag
        self.by_tag: dict = {}
        self.peak_by_tag: dict = {}

    def _pack(self, t: torch.Tensor):
        if t.data_ptr() not in self._param_ptrs:
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype)
            if key not in self._seen:
                self._seen.add(key)
                self._held.append(t)
                n = t.numel() * t.element_size()
                self.current += n
                if self._tag is not None:
                    k = self._tag()
                    self.by_tag[k] = self.by_tag.get(k, 0) + n
                if self.current > self.peak:
                    self.peak = self.current
                    if self._tag is not None:
                        self.peak_by_tag = dict(self.by_tag)
        return t

    @staticmethod
    def _unpack(t):
        return t

    def graph_freed(self):
        """Call after each backward: that graph's saved tensors are released."""
        self._seen.clear()
        self._held.clear()
        self.by_tag = {}
        self.current = 0

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False


def state_bytes(state) -> int:
    """Bytes carried from one step to the next (SAFState / LIFState)."""
    total = 0
    for name in ("a", "u", "s", "ahat"):
        for t in getattr(state, name, []) or []:
            if t is not None:
                total += t.numel() * t.element_size()
    return total
