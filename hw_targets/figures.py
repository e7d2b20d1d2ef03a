"""Published per-operation energy and time figures of the Loihi chips, each a `Figure` record carrying
its source; a figure that is not a published number for that chip is marked `assumption=True` and says
why. Leaf module (stdlib only); targets.py puts each chip's figures in its Target record and energy.py
turns them into estimates.

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
          per-operation energy or time figures. For Loihi 2 the figures are [D18]'s Loihi 1 ones,
          marked as an assumption (Loihi 2 is a newer process, Intel 4, so the real figures are
          expected to be lower).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    key: str
    value: float
    unit: str
    source: str
    assumption: bool = False
    note: str = ""


def _loihi1_figures(src: str = "Davies et al. IEEE Micro 2018, Table 2", assumption: bool = False,
                    note: str = "") -> tuple:
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
    return tuple(f)



LOIHI1_FIGURES = _loihi1_figures()
LOIHI2_FIGURES = _loihi1_figures(
    src="Davies et al. IEEE Micro 2018, Table 2 (Loihi 1)", assumption=True,
    note="no per-operation figures are published for Loihi 2 (Intel's 2021 brief, Orchard et al. 2021); "
         "Loihi 1's are used")
