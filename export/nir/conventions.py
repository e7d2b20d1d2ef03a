"""What both NIR directions agree on, defined once: the graph metadata this toolchain writes (from_run.py, fp.py)
and reads back (meta.py, to_run.py, dsr.py, fp.py), the words of the --compare flag, and the defaults for what a
NIR file cannot carry (docs/nir.md), which the export writes when the run does not say."""
from __future__ import annotations

from dataclasses import dataclass

from saf.core.neuron_modes import COMPARE_GE, COMPARE_GT, RESET_ZERO

SAF_META = "saf"                     # graph metadata key of a NIR file this toolchain wrote (from_run.py, fp.py)
FORMAT = "saf-nir-1"                 # its graph metadata "format"
DSR_KEY = "dsr"                      # its `saf` entry of a DSR run (spec["dsr"]: alpha, readout, vth_min; dsr.py)
FP_METHOD = "fp"                     # its `saf` "method" of an FP run (fp.py)
RESET_BY = "saf_reset_by"            # node metadata: what a DSR neuron's reset subtracts (its V^l)
COMPARE_OF_FLAG = {"gt": COMPARE_GT, "ge": COMPARE_GE}   # --compare word (and metadata "compare") -> the mode
FLAG_OF_COMPARE = {mode: word for word, mode in COMPARE_OF_FLAG.items()}
# --current-order: which current a CubaLIF's potential adds at step t. "snntorch": syn[t], the current that
# already holds step t's input (snnTorch's Synaptic, Norse's LIFCell: lif_feed_forward_step adds the input to i
# before v integrates it, and saf's two-state layer, export/ir.py). "nir": syn[t-1] (forward Euler of NIR's
# equations, both states stepping from t-1): the input reaches v one step later, a delay saf's layer has not.
CURRENT_ORDERS = ("snntorch", "nir")


@dataclass
class Options:
    """What a NIR file cannot carry (docs/nir.md: defaults per source). None: from the file's saf
    metadata when it has it, else the default, and the import says what it assumed."""
    dt: float = None
    T: int = None
    reset: str = None
    compare: str = None
    encoder: str = None
    dataset: str = None
    current_order: str = None


DEFAULTS = Options(dt=1e-4, T=6, reset=RESET_ZERO, compare="gt", encoder="constant", dataset="digits",
                   current_order="snntorch")
WHY = {"dt": "snnTorch's export_to_nir writes dt = 1e-4", "T": "NIR has no T",
       "reset": "NIR's v_reset; snnTorch's Leaky(reset_mechanism='subtract') is --reset subtract-undecayed",
       "compare": "NIR fires on v > v_threshold", "encoder": "the image as a constant current every step",
       "dataset": "saf eval/export read its test set",
       "current_order": "a CubaLIF's v[t] adds the current syn[t] that holds step t's input, as snnTorch's Synaptic "
                        "and Norse's LIFCell compute; NIR's Euler form adds syn[t-1]: --current-order nir"}
