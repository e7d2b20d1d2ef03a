"""saf.core, the ground floor: rules every package uses and that import nothing else of saf.

- neuron_modes.py  the per-layer reset / compare modes and the synaptic-decay key (the one list of allowed values)
- outdir.py        staged output directories: what --force may replace, built beside and swapped in
- files.py         atomic file replacement, streaming sha256, a safetensors header read, the umask
- errors.py        SafError, the base of every error saf reports to a user (one line, exit code 2)

train, export, hw_targets and deploy import from here; core imports none of them (tests/test_layout.py).
"""
