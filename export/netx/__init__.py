"""lava-dl netx (`.net` HDF5) networks in and out: read.py parses a file into typed layer records
(refusing what netx itself would not run as Lava's LIF), to_graph.py turns them into the IR with the
integers netx loads, run_dir.py writes the run `saf import` makes, write.py writes a bundle's graph as
a `.net` file (docs/netx.md)."""
