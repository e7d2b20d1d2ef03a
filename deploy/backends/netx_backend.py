"""The `netx` backend record: lava-dl's own loader (lava.lib.dl.netx.hdf5.Network) builds the network from a
.net file and Lava runs it in Loihi2SimCfg fixed_pt (deploy/lava/netx_run.py). The file is the bundle's
source.net (a saf import of a netx file, as authenticated) or, for any other bundle, the .net file saf export
--target netx writes from the graph (export/netx/write.py): lava-dl's loader must read it back."""
from __future__ import annotations

import numpy as np

from saf.deploy.backends.spec import STOCK_REGISTER, BackendSpec, Form, register
from saf.export.bundle.store import NETX_SOURCE_FILE
from saf.export.ir import Graph
from saf.core.neuron_modes import COMPARE_GT, RESET_ZERO, NeuronMode

ZERO_GT = NeuronMode(COMPARE_GT, RESET_ZERO)    # Lava's stock LIF as netx builds it: v > vth << 6, v = 0 after a spike


def _netx_missing() -> str:
    """Only deploy/lava imports lava (tests/test_layout.py): the check itself lives beside the runner."""
    try:
        from saf.deploy.lava.netx_run import netx_missing
    except ImportError as e:
        return f"Lava is not importable ({type(e).__name__}: {e})"
    return netx_missing()


def netx_refuses(graph: Graph) -> str:
    """Why lava-dl's netx loader cannot run `graph` ("" when it can): an imported netx file always runs; any
    other graph must be one netx can hold (export/netx/write.py's rules)."""
    if graph.meta.get("netx"):
        return ""
    from saf.export.netx.write import netx_problem
    return netx_problem(graph)


def _run_netx(bundle, g, xq, record_spikes, record_potentials, progress, **opts):
    from saf.deploy.lava.netx_run import run_netx
    if NETX_SOURCE_FILE in bundle.files and g.meta.get("netx"):
        data = bundle.files[NETX_SOURCE_FILE]             # the imported file's bytes, as authenticated
    else:
        from saf.export.netx.write import netx_bytes
        data, g = netx_bytes(g)                            # the file saf export --target netx writes
    if not g.feedback:
        return run_netx(data, g, xq, record_spikes)
    # a recurrent synapse would carry a sample's last spike into the next one: one network per sample
    parts = [run_netx(data, g, xq[i:i + 1], record_spikes) for i in range(len(xq))]
    r = parts[0]
    r.readout = np.concatenate([p.readout for p in parts])
    r.spikes = [np.concatenate(s) for s in zip(*[p.spikes for p in parts])] if record_spikes else None
    r.seconds = sum(p.seconds for p in parts)
    r.info["networks"] = len(parts)
    return r


register(BackendSpec("netx", Form.LIF, False, _run_netx, frozenset({ZERO_GT}), subset=True, refuses=netx_refuses,
                     unavailable=_netx_missing, current_register=STOCK_REGISTER,
                     description="lava-dl's netx loader on the network's .net file, Lava's stock LIF, Loihi2SimCfg "
                                 "fixed_pt"))
