"""Energy and latency per inference on Loihi, ESTIMATED from published per-operation figures.

Leaf module (stdlib only). Every figure is a `Figure` record carrying its source; a figure that is
not a published Loihi number is marked `assumption=True` and says why.

Sources:
  [D18]   Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE
          Micro 38(1), 2018, Table 2 ("Loihi pre-silicon performance and energy measurements",
          p. 96): energy per synaptic spike op (min) 23.6 pJ, time per synaptic spike op (max)
          3.5 ns; energy per neuron update (active / inactive) 81 pJ / 52 pJ, time 8.4 ns / 5.3 ns;
          within-tile spike energy 1.7 pJ; energy per tile hop (E-W / N-S) 3.0 / 4.0 pJ;
          mesh-wide barrier sync time (1-32 tiles) 113-465 ns. The paper says these come from
          SDF/SPICE simulation "consistent with early post-silicon characterization": they are
          design figures, not a measured chip. (Checked against a verbatim transcription of the
          table found with the search tool; the PDF itself was not reachable from this machine.)
  [L2B]   Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology brief,
          2021, and Orchard et al., IEEE SiPS 2021: they give capacity and speed-up claims, but no
          per-operation energy or time figures. For Loihi 2 this model therefore reuses [D18]'s
          Loihi 1 figures, marked as an assumption (Loihi 2 is a newer process, Intel 4, so the
          real figures are expected to be lower).

The model (itself a choice, stated so it can be checked):
  energy  = synops * E_synop + spikes * (E_spike_tile + hops * E_hop)
            + spiking neuron updates * E_update_active + the other neuron updates * E_update_inactive
  latency = steps * (max work of one core per step + barrier sync), with the work of a layer spread
            evenly over its cores: synops / (steps * cores) * t_synop + neurons / core * t_update.
Static (leakage) power, host I/O and the x86 cores are not included.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

ESTIMATE_NOTE = ("estimate from published per-operation figures (not a measurement on a chip); "
                 "static power and host I/O not included")


@dataclass(frozen=True)
class Figure:
    key: str
    value: float
    unit: str
    source: str
    assumption: bool = False
    note: str = ""


def _loihi1_figures(src: str = "Davies et al. IEEE Micro 2018, Table 2", assumption: bool = False,
                    note: str = "") -> dict:
    f = [
        Figure("synop_pj", 23.6, "pJ", src + " (energy per synaptic spike op, min)", assumption, note),
        Figure("synop_ns", 3.5, "ns", src + " (time per synaptic spike op, max)", assumption, note),
        Figure("update_active_pj", 81.0, "pJ", src + " (energy per neuron update, active)", assumption, note),
        Figure("update_inactive_pj", 52.0, "pJ", src + " (energy per neuron update, inactive)", assumption, note),
        Figure("update_active_ns", 8.4, "ns", src + " (time per neuron update, active)", assumption, note),
        Figure("update_inactive_ns", 5.3, "ns", src + " (time per neuron update, inactive)", assumption, note),
        Figure("spike_tile_pj", 1.7, "pJ", src + " (within-tile spike energy)", assumption, note),
        Figure("hop_pj", 3.5, "pJ", src + " (energy per tile hop, mean of E-W 3.0 / N-S 4.0)", assumption, note),
        Figure("barrier_ns", 465.0, "ns", src + " (mesh-wide barrier sync, 32 tiles = one chip)", assumption, note),
        # choice: a spike crosses this many tile hops on average (the mapper does not place cores on
        # the mesh). 4 is about the mean Manhattan distance between two random tiles of an 8x4 mesh.
        Figure("mean_hops", 4.0, "hops", "choice of this toolchain (mean distance on an 8x4 tile mesh)", True,
               "placement on the mesh is not modelled"),
    ]
    return {x.key: x for x in f}


FIGURES = {
    "loihi1": _loihi1_figures(),
    "loihi2": _loihi1_figures(
        src="Davies et al. IEEE Micro 2018, Table 2 (Loihi 1)", assumption=True,
        note="no per-operation figures are published for Loihi 2 (Intel's 2021 brief, Orchard et al. 2021); "
             "Loihi 1's are used"),
}
FIGURES["loihi"] = FIGURES["loihi2"]


@dataclass
class LayerActivity:
    """Per inference: synaptic ops a layer's input connections perform, its neurons, their spikes."""
    name: str
    neurons: int
    synops: float
    spikes: float
    cores: int = 1


def estimate(target: str, layers: list, T: int, steps: int = 0) -> dict:
    """Energy (uJ) and latency (us) of one inference from per-layer activity (LayerActivity list)."""
    key = str(target).lower()
    if key not in FIGURES:
        raise ValueError(f"no energy figures for target {target!r} (known: {', '.join(sorted(FIGURES))})")
    f = {k: v.value for k, v in FIGURES[key].items()}
    steps = int(steps or T)
    e_syn = e_route = e_upd = 0.0
    worst_ns = 0.0
    for l in layers:
        updates = float(l.neurons) * T
        active = min(float(l.spikes), updates)
        e_syn += l.synops * f["synop_pj"]
        e_route += l.spikes * (f["spike_tile_pj"] + f["mean_hops"] * f["hop_pj"])
        e_upd += active * f["update_active_pj"] + (updates - active) * f["update_inactive_pj"]
        cores = max(1, int(l.cores))
        per_core = (l.synops / T / cores) * f["synop_ns"] + \
            (l.neurons / cores) * (f["update_active_ns"] if updates and active / updates > 0.5 else f["update_inactive_ns"])
        worst_ns = max(worst_ns, per_core)
    step_ns = worst_ns + f["barrier_ns"]
    total_pj = e_syn + e_route + e_upd
    return {"target": key, "estimate": True, "note": ESTIMATE_NOTE,
            "energy_uj": total_pj * 1e-6,
            "energy_breakdown_uj": {"synaptic_ops": e_syn * 1e-6, "spike_routing": e_route * 1e-6,
                                    "neuron_updates": e_upd * 1e-6},
            "latency_us": steps * step_ns * 1e-3, "time_step_us": step_ns * 1e-3, "steps": steps,
            "figures": [asdict(x) for x in FIGURES[key].values()]}


def format_estimate(e: dict, indent: str = "  ") -> str:
    b = e["energy_breakdown_uj"]
    lines = [f"{indent}Loihi estimate ({e['target']}): {e['energy_uj']:.3g} uJ and {e['latency_us']:.3g} us per "
             f"inference ({e['steps']} steps of ~{e['time_step_us']:.3g} us); synaptic ops {b['synaptic_ops']:.3g} uJ, "
             f"spike routing {b['spike_routing']:.3g} uJ, neuron updates {b['neuron_updates']:.3g} uJ",
             f"{indent}  ({e['note']})"]
    notes = []
    for x in e["figures"]:
        mark = ""
        if x["assumption"]:
            if x["note"] not in notes:
                notes.append(x["note"])
            mark = f" [assumption {notes.index(x['note']) + 1}]"
        lines.append(f"{indent}  {x['key']:<19} {x['value']:>6g} {x['unit']:<5} {x['source']}{mark}")
    lines += [f"{indent}  assumption {i + 1}: {n}" for i, n in enumerate(notes)]
    return "\n".join(lines)
