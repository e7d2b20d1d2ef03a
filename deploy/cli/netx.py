"""`saf import model.net` (a lava-dl netx file, export/netx/) and `saf export` of the run it writes; the
import and export subcommands themselves are registered in cli/nir.py and cli/export.py, which call here."""
from __future__ import annotations

import json

from saf.export.netx.errors import NetxError

DEFAULT_T = 8                       # a netx file has no T
NIR_ONLY = ("dt", "reset", "compare", "encoder", "input_shape")


def import_netx(a) -> int:
    """saf import of a netx file: the run directory (export/netx/run_dir.py) and one summary line."""
    from saf.export.netx.run_dir import write_netx_run

    given = [f"--{f.replace('_', '-')}" for f in NIR_ONLY if getattr(a, f, None) is not None]
    if given:
        raise NetxError(f"{given[0]} does not apply to a netx file (its neurons are Lava's LIF: reset to zero, "
                        f"v > vth, one step per time step)")
    T = a.T if a.T is not None else DEFAULT_T
    if a.T is None:
        print(f"assumed: --T {DEFAULT_T} (a netx file has no T)")
    path, g = write_netx_run(a.model, a.out, T, a.dataset, a.force)
    nx = g.meta["netx"]
    kinds = ", ".join(f"{l.name} {l.kind} {list(l.out_shape)}" for l in g.layers)
    print(f"imported {a.model} (netx): {len(g.spiking_layers)} spiking layers ({kinds}); Lava LIF: reset zero, "
          f"compare >, F 6, vDecay {g.decay}; input x_q = round({g.input_scale:g} x) ({g.input_bits} bits{', signed' if g.input_signed else ''}); netx latency: layer k "
          f"answers k + {nx['input_delay']} steps after its input (aligned by reset_interval T); T {g.T}; run {path}")
    return 0


def export_netx_run_cli(a) -> int:
    """saf export of an imported netx run (export/netx/run_dir.py): no quantization, the file's integers."""
    from saf.export.netx.run_dir import export_netx_run

    given = [f for f, v in (("--random-model", a.random_model), ("--calibrate-data", a.calibrate_data),
                            ("--input-scale", a.input_scale), ("--approximate", a.approximate),
                            ("--dt-exp", a.dt_exp), ("--synapse-words 2", a.synapse_words != 1)) if v]
    if given:
        raise NetxError(f"{given[0]} does not apply to an imported netx run (its integers are the file's)")
    r = export_netx_run(a.checkpoint, a.target, a.out, a.force, a.T)
    if a.json:
        print(json.dumps({k: v for k, v in r.items() if not k.endswith("_text") and k != "graph"}, indent=2,
                         default=str))
        return 0
    print(r["resources_text"])
    print(r["certificate_text"])
    for adv in r.get("advisories", []):
        print(f"  advisory: {adv}")
    print(f"bundle written to {a.out} in {r['seconds']:.1f} s (the netx file's integers, no quantization; "
          f"source.net travels with it for saf verify --backends ...,netx)")
    return 0


def export_to_netx(a) -> int:
    """--target netx: the run's integer graph (an imported netx run's, or the loihi2 export's of a trained
    run, built in a temporary bundle) written as a lava-dl netx file (export/netx/write.py)."""
    import tempfile
    from pathlib import Path

    from saf.export.bundle.store import load_graph
    from saf.export.netx.run_dir import is_netx_run, read_netx_run
    from saf.export.netx.write import netx_meta, netx_problem, write_netx
    from saf.export.pipeline.snn import export_checkpoint

    if a.random_model:
        raise NetxError("--random-model does not apply to --target netx (give a trained run)")
    if is_netx_run(a.checkpoint):
        g = read_netx_run(a.checkpoint, a.T)[0]
    else:
        with tempfile.TemporaryDirectory(prefix="saf-netx-") as tmp:
            export_checkpoint(a.checkpoint, "loihi2", Path(tmp) / "bundle", calibrate_data=a.calibrate_data,
                              data_root=a.data_root, T=a.T, input_scale=a.input_scale, input_bits=a.input_bits,
                              input_signed=a.input_signed, sum_pool="off")
            g = load_graph(Path(tmp) / "bundle")
    why = netx_problem(g)
    if why:
        raise NetxError(f"{a.checkpoint}: cannot be written as netx: {why}")
    out = write_netx(g, a.out, a.force)
    m = netx_meta(g)
    print(f"netx file written to {out}: {len(g.spiking_layers)} CUBA layers + output integrator, T {g.T} (not in "
          f"the file), vDecay {g.decay}; load with netx.hdf5.Network(net_config, input_message_bits="
          f"{m['input_message_bits']}); each layer answers one step after the one before (docs/netx.md)")
    return 0
