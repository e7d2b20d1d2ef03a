"""saf.train. Importing it lets each training method register what it owns: IDE's built-in specs
(train/spec.py register_specs), DSR's network and FP's checkpoint format (train/networks.py). These
imports are light (no torch), and the package face is the top of train, so train/spec.py and
train/checkpoint.py import no method."""
from saf.train.methods import dsr as _dsr, fp as _fp  # noqa: F401 - registration at import
from saf.train.methods.ide import specs as _ide_specs  # noqa: F401 - registration at import
