"""NIR interchange (nir on PyPI, 1.0.x; HDF5 files): `saf import MODEL.nir` turns a NIR graph into a run
directory (graph.py reads and checks it, neurons.py discretizes its neurons, to_run.py builds the spec
and weights), and `saf export RUN --target nir` writes a trained run as NIR (from_run.py). What NIR
cannot say (dt, the reset mode, the compare, T, the readout) is an option with a stated default, or
read from the graph metadata this toolchain writes: docs/nir.md."""
from saf.export.nir.errors import NirError  # noqa: F401
