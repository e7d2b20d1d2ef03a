"""`--method dsr`. Importing the package registers DSR's network with train/networks.py, so load_model
builds a DSRNet for a spec with a "dsr" entry (the class itself is imported only when one is built)."""
from saf.train.networks import register_network


def _build(spec: dict, readout):
    from saf.train.methods.dsr.net import DSRNet
    return DSRNet(spec, readout=readout)


register_network("dsr", lambda spec: "dsr" in spec, _build)
