"""NIR interchange (nir on PyPI, 1.0.x; HDF5 files): `saf import MODEL.nir` turns a NIR graph into a run
directory through one entry, import_nir (entry.py: graph.py reads and checks the graph, meta.py its metadata,
neurons.py discretizes its neurons, to_run.py, dsr.py or fp.py builds the network), and `saf export RUN
--target nir` writes a trained run as NIR (from_run.py). What NIR cannot say (dt, the reset mode, the compare,
T, the readout) is an option with a stated default, or read from the graph metadata this toolchain writes
(conventions.py, shared by both directions): docs/nir.md."""
from saf.export.nir.errors import NirError  # noqa: F401
from saf.export.nir.entry import NirImport, import_nir  # noqa: F401
