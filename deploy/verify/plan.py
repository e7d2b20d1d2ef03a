"""Which backends one `saf verify` run compares: an explicit list as given (each refusal before anything
runs), or the default list with its policy (a refusing backend replaced by its fallback, saf-int left out of
an approximate bundle, the trained model added for a grid-trained run), each change a note for the report."""
from __future__ import annotations

from typing import Optional

from saf.deploy.backends.registry import Bundle
from saf.deploy.backends.spec import BACKENDS, check_runs, resolve_backends, with_fallbacks

DEFAULT_BACKENDS = ("saf-int", "emulator", "onnx", "lava")   # lava: Lava's stock LIF (lava-own where it refuses)


def plan_backends(bundle: Bundle, names: Optional[list], flag: str = "--backends") -> tuple:
    """(specs, notes): names None -> the default list and its policy; else the named backends, refused in one
    line naming `flag` where one cannot run the bundle's network."""
    specs = resolve_backends(list(names) if names is not None else list(DEFAULT_BACKENDS), flag)
    if names is not None:        # an explicit list never swaps: a backend that cannot run it is refused
        check_runs(specs, bundle.graph, flag)
        return specs, []
    from saf.deploy.verify.approx import is_approximate

    notes = []
    if is_approximate(bundle) and any(s.name == "saf-int" for s in specs):
        specs = [s for s in specs if s.name != "saf-int"]
        notes.append("saf-int left out of the default backends: the bundle is approximate (--approximate, NOT "
                     "EXACT): the SAF form is measured against the float model below instead of compared spike "
                     "for spike")
    specs, more = with_fallbacks(specs, bundle.graph, flag)
    notes += more
    if bundle.graph.meta.get("trained_on_grid"):      # a grid-trained run: the trained model joins the proof
        specs.append(BACKENDS["trained"])
        notes.append("trained added to the default backends: the bundle is a grid-trained run's integer network, "
                     "so its own torch forward is compared spike for spike")
    return specs, notes
