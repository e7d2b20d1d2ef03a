"""`saf import MODEL.nir --out RUN`: a NIR graph as a run directory (export/nir/, docs/nir.md)."""
from __future__ import annotations

from saf.export.nir.errors import NirError
from saf.export.nir.spiking_out import READOUT_CHOICES
from saf.export.nir.conventions import COMPARE_OF_FLAG, CURRENT_ORDERS, DEFAULTS, Options
from saf.core.neuron_modes import RESETS


def register(sub) -> None:
    p = sub.add_parser("import", help="turn a NIR graph (snnTorch, Norse, ... or saf export --target nir) into a run",
                       description="Read a NIR file, map it onto saf's discrete neuron and write a run directory "
                                   "that saf eval, saf export and saf verify accept. NIR carries no dt, T, reset "
                                   "mode or compare: each is a flag, read from saf's own metadata when the file has "
                                   "it, else assumed (said in one line). docs/nir.md")
    p.add_argument("model", help="the .nir file, or a lava-dl netx .net file (HDF5; docs/netx.md)")
    p.add_argument("--format", choices=("nir", "netx"), help="the file's format (default: told from its layout, or netx for a .net file)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--dt", type=float, help=f"time step of the discretization (default {DEFAULTS.dt:g}, snnTorch's)")
    p.add_argument("--T", type=int, help=f"time steps per sample (default {DEFAULTS.T})")
    p.add_argument("--reset", choices=RESETS, help="zero (NIR's v_reset; default), subtract (saf: lam (v - theta s)), "
                   "subtract-undecayed (snnTorch's Leaky subtract: lam v - theta s)")
    p.add_argument("--compare", choices=tuple(COMPARE_OF_FLAG), help="gt: fire on v > theta (NIR, default); ge: v >= theta")
    p.add_argument("--encoder", help=f"input coding (default {DEFAULTS.encoder}: the image every step)")
    p.add_argument("--dataset", help=f"dataset saf eval/export use (default {DEFAULTS.dataset})")
    p.add_argument("--input-shape", help="C,H,W: the images a flat Input (e.g. Norse's [64]) reads, flattened in "
                   "C order (default: the dataset's shape when it has as many values and loads without files)")
    p.add_argument("--current-order", choices=CURRENT_ORDERS,
                   help="which current a CubaLIF's v[t] adds: snntorch: syn[t], with step t's input (snnTorch's "
                        "Synaptic, Norse's LIFCell; default, or saf's own file's); nir: syn[t-1] (refused: saf's "
                        "layer has no one-step delay)")
    p.add_argument("--readout", choices=READOUT_CHOICES, help="a graph ending in a spiking node (IF, LIF, CubaLIF): "
                   "count (default) reads its spike counts over T (prediction: most spikes, lowest index on ties); "
                   "membrane reads its membrane without threshold, R = v[T], v[t] = lam v[t-1] + W s[t] + b")
    p.add_argument("--force", action="store_true", help="replace the saf run in --out")
    p.set_defaults(func=cmd_import)


def _shape_flag(text):
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise NirError(f"--input-shape {text}: expected positive integers separated by commas, e.g. 1,8,8")
    return shape


def _detected(path) -> str:
    from saf.export.netx.read import is_netx_file
    return "netx" if str(path).endswith(".net") or is_netx_file(path) else "nir"


def cmd_import(a) -> int:
    from saf.export.nir import import_nir
    from saf.export.nir.entry import FP
    from saf.train.checkpoint import RUN_DIR
    from saf.train.data.encoders import ENCODERS
    from saf.core.outdir import check_target

    if (a.format or _detected(a.model)) == "netx":
        if a.readout is not None:
            raise NirError("--readout: applies to a NIR graph ending in a spiking node, not to a netx file")
        from saf.deploy.cli.netx import import_netx
        return import_netx(a)
    if a.encoder is not None and a.encoder not in ENCODERS:
        raise NirError(f"--encoder {a.encoder}: expected one of {', '.join(ENCODERS)}")
    check_target(a.out, (RUN_DIR,), a.force)
    opts = Options(a.dt, a.T, a.reset, a.compare, a.encoder, a.dataset, a.current_order)
    res = import_nir(a.model, opts, _shape_flag(a.input_shape), a.readout)
    if res.kind == FP:
        path = res.write(a.out, a.force)
        print(f"imported {a.model}: an FP network (CubaLIF, first-spike readout); run {path}")
        return 0
    imp = res.imported
    if imp.assumed:
        print(f"assumed: {'; '.join(imp.assumed)}")
    if a.readout is not None:
        from saf.export.nir.spiking_out import stated
        print(f"readout: {stated(res.chain, a.readout)}")
    path = res.write(a.out, a.force)
    s = imp.spec
    print(f"imported {a.model}: {sum(1 for l in s['layers'] if l['type'] in ('linear', 'conv'))} spiking layers, lam {s['neuron']['lam']:g}, "
          f"theta {s['neuron']['theta']:g}, reset {imp.options.reset}, compare {COMPARE_OF_FLAG[imp.options.compare]}, "
          f"{'DSR (alpha ' + format(s['dsr']['alpha'], 'g') + ') ' if 'dsr' in s else ''}readout {imp.readout}, T {s['T']}, {len(s.get('feedback', []))} recurrent; run {path}")
    return 0
