"""Energy and latency per inference on Loihi, ESTIMATED from published per-operation figures.

The figures come from each Target record (targets.py); figures.py holds them with their sources
([D18]'s Loihi 1 design figures; for Loihi 2 the same, marked as an assumption).

The model (itself a choice, stated so it can be checked):
  energy  = synops * E_synop + spikes * (E_spike_tile + hops * E_hop)
            + spiking neuron updates * E_update_active + the other neuron updates * E_update_inactive
  latency = steps * (max work of one core per step + barrier sync), with the work of a layer spread
            evenly over its cores: synops / (steps * cores) * t_synop + neurons / core * t_update.
Static (leakage) power, host I/O and the x86 cores are not included.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from saf.hw_targets.targets import TARGETS

ESTIMATE_NOTE = ("estimate from published per-operation figures (not a measurement on a chip); "
                 "static power and host I/O not included")

# target name -> {figure key: Figure}, for every target whose record carries energy figures
FIGURES = {name: {x.key: x for x in t.energy} for name, t in TARGETS.items() if t.energy}


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
