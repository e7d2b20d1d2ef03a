"""Write an imported NIR network (to_run.py) as a run directory: model.safetensors with the spec, a
training config (method bptt: the float LIF form is BPTT's, which honours every reset and compare
mode; method dsr for a DSR run saf wrote, export/nir/dsr.py) and the readout, built beside --out and swapped in only when complete (core/outdir.py)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from saf.export.nir.errors import NirError
from saf.export.nir.to_run import Imported


def imported_net(imp: Imported):
    """The SpikingNet of `imp` with its weights loaded (spec and weight shapes checked)."""
    import torch

    from saf.train.modules.network import SpikingNet
    from saf.train.readout import READOUTS
    from saf.train.spec import SpecError

    try:
        if "dsr" in imp.spec:                      # export/nir/dsr.py: the DSR run a saf export wrote
            from saf.train.methods.dsr.net import DSRNet
            net = DSRNet(imp.spec, readout=READOUTS[imp.readout])
        else:
            net = SpikingNet(imp.spec, surrogate="sigmoid", readout=READOUTS[imp.readout])
    except SpecError as e:
        raise NirError(f"{imp.spec['source']['file']}: the network it describes is not one saf runs ({e})") from None
    want = net.state_dict()
    if set(want) != set(imp.tensors):
        raise NirError(f"{imp.spec['source']['file']}: internal mismatch of weights {sorted(set(want) ^ set(imp.tensors))}")
    for k, v in want.items():
        if tuple(v.shape) != imp.tensors[k].shape:
            raise NirError(f"{imp.spec['source']['file']}: weight {k} has shape {list(imp.tensors[k].shape)}, the network "
                           f"needs {list(v.shape)}")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in imp.tensors.items()})
    return net


def run_config(imp: Imported) -> dict:
    from saf.train.run.trainer import TrainConfig

    o = imp.options
    kw = dict(model=imp.spec["name"], dataset=o.dataset, method="bptt", T=int(o.T), lam=float(imp.spec["neuron"]["lam"]),
              theta=float(imp.spec["neuron"]["theta"]), epochs=0, encoder=o.encoder, val_fraction=0.0)
    dsr = imp.spec.get("dsr")
    if dsr:
        kw.update(method="dsr", dsr_alpha=float(dsr["alpha"]), dsr_readout=dsr["readout"])
    cfg = asdict(TrainConfig(**kw))
    return dict(cfg, epochs_done=0, source="nir")


def write_run(imp: Imported, out, force: bool = False) -> Path:
    """model.safetensors of `imp` in run directory `out` (atomically)."""
    from saf.train.checkpoint import CHECKPOINT, RUN_DIR, save_checkpoint
    from saf.core.outdir import Staged

    net = imported_net(imp)
    with Staged(out, (RUN_DIR,), force) as tmp:
        save_checkpoint(Path(tmp) / CHECKPOINT, net, run_config(imp))
    return Path(out) / CHECKPOINT
