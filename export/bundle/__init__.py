"""A bundle on disk (store.py: manifest.json, weights.npz, model.onnx), its authentication (auth.py),
the manifest's schema (manifest.py) and its one error type (error.py). The public face:

    from saf.export.bundle import load_graph, read_manifest
"""
from saf.export.bundle.error import BundleError
from saf.export.bundle.store import (BUNDLE_DIR, FP_SOURCE_FILE, MANIFEST, ONNX_FILE, SOURCE_FILE, WEIGHTS,
                                     load_graph, read_bundle, read_manifest, write_bundle)

__all__ = ["BundleError", "BUNDLE_DIR", "FP_SOURCE_FILE", "MANIFEST", "ONNX_FILE", "SOURCE_FILE", "WEIGHTS",
           "load_graph", "read_bundle", "read_manifest", "write_bundle"]
