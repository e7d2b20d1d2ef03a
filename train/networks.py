"""What a checkpoint's spec builds, where a training method owns it: a method registers here when its
package is imported (train/__init__.py imports them), so train/checkpoint.py imports no method.
- register_network: a network class of the method's own (DSR's: a spec with a "dsr" entry); every other
  spec builds the plain SpikingNet.
- register_own_format: a method whose checkpoints hold a network load_model does not build (FP's
  continuous-time net); load_model refuses such a checkpoint with the method's one-line pointer."""
from __future__ import annotations

from typing import Callable, Optional

NETWORKS: list = []          # (name, claims(spec) -> bool, build(spec, readout) -> the network)
OWN_FORMATS: dict = {}       # a checkpoint config's "method" -> why load_model refuses it and what loads it


def register_network(name: str, claims: Callable[[dict], bool], build: Callable) -> None:
    NETWORKS[:] = [n for n in NETWORKS if n[0] != name] + [(name, claims, build)]


def register_own_format(method: str, refusal: str) -> None:
    OWN_FORMATS[method] = refusal


def network_builder(spec: dict) -> Optional[Callable]:
    """The registered build(spec, readout) of the method that claims `spec`, else None (SpikingNet)."""
    return next((build for _, claims, build in NETWORKS if claims(spec)), None)
