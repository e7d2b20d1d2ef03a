"""`saf import MODEL.nir`'s one entry (import_nir): read the graph and its metadata `saf` once, pick what the
file is (an FP run saf wrote: fp.py; a DSR run saf wrote: dsr.py; any other network: to_run.py), refuse the
flags that kind of file does not take, and hand back what to write (NirImport.write) and to print."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from saf.export.nir.conventions import Options
from saf.export.nir.errors import NirError
from saf.export.nir.graph import Chain

FP, DSR, PLAIN = "fp", "dsr", "plain"
FP_OWN = ("dt", "T", "reset", "compare", "encoder", "dataset")    # Options an FP file carries itself


@dataclass
class NirImport:
    """One imported NIR file: an FP network (fp: (FPNet, config)), or a DSR or plain one (imported)."""
    kind: str                         # FP | DSR | PLAIN
    chain: Chain
    imported: object = None           # to_run.Imported (DSR, PLAIN)
    fp: Optional[tuple] = None        # (FPNet, config) (FP)

    def write(self, out, force: bool = False) -> Path:
        """The run directory `out` (atomically; an existing run replaced only with force)."""
        if self.kind == FP:
            from saf.export.nir.fp import write_fp_run
            return write_fp_run(*self.fp, out, force)
        from saf.export.nir.run_dir import write_run
        return write_run(self.imported, out, force)


def _flag(field: str) -> str:
    return "--T" if field == "T" else "--" + field.replace("_", "-")


def _refuse_fp_flags(model, given: Options, input_shape, readout) -> None:
    if readout is not None:
        raise NirError("--readout: an FP file saf wrote carries its first-spike readout")
    flags = [_flag(f) for f in FP_OWN] + ["--input-shape"]
    given_flags = [_flag(f) for f in FP_OWN if getattr(given, f) is not None]
    given_flags += ["--input-shape"] if input_shape is not None else []
    if given_flags:
        raise NirError(f"{given_flags[0]}: {model} is an FP network saf wrote; its time grid, neuron, input code "
                       f"and dataset are the file's own (graph metadata 'saf'): give none of {', '.join(flags)}")


def import_nir(model, given: Options, input_shape: Optional[tuple] = None,
               readout: Optional[str] = None) -> NirImport:
    """The NIR file `model` as a run to write: given holds the flags (None: the file's metadata, else
    DEFAULTS); input_shape: the images a flat Input reads; readout: --readout of a graph ending in a spiking
    node. Refusals are one NirError line naming the file, node or flag."""
    from saf.export.nir.dsr import build_dsr, is_dsr
    from saf.export.nir.fp import fp_net, is_fp
    from saf.export.nir.graph import chain, read_graph
    from saf.export.nir.meta import saf_meta
    from saf.export.nir.to_run import build

    ch = chain(model, read_graph(model))
    meta = saf_meta(ch)                               # the one read of the graph metadata `saf`
    if is_fp(meta):                                   # an FP run saf wrote: its checkpoint again
        _refuse_fp_flags(model, given, input_shape, readout)
        return NirImport(FP, ch, fp=fp_net(ch, meta))
    if is_dsr(meta):
        if input_shape is not None or readout is not None:
            raise NirError(f"{'--input-shape' if input_shape is not None else '--readout'}: a DSR file saf wrote "
                           f"carries its input shape and readout")
        return NirImport(DSR, ch, build_dsr(ch, meta, given))
    return NirImport(PLAIN, ch, build(ch, meta, given, input_shape, readout))
