"""Abstract ProcessModel that knows where it stands on the toolchain's streaming schedule."""
from __future__ import annotations

from lava.magma.core.model.py.model import PyLoihiProcessModel


class AbstractPhasedModel(PyLoihiProcessModel):
    """Base for models that update once every `period` Lava steps, starting at `offset`.

    Logical step t (0-based) of sample n happens at Lava step offset + period * (n * T + t).
    proc_params must hold period, offset, T and n_samples.
    """

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.period = int(self.proc_params["period"])
        self.offset = int(self.proc_params["offset"])
        self.T = int(self.proc_params["T"])
        self.n_samples = int(self.proc_params["n_samples"])

    def position(self):
        """(sample n, logical step t) updated at the current Lava step, or None (idle step)."""
        rel = self.time_step - self.offset
        if rel < 0 or rel % self.period:
            return None
        n, t = divmod(rel // self.period, self.T)
        if n >= self.n_samples:
            return None
        return n, t
