"""`saf verify`: the certificate re-derived and every layer's spikes compared across forms (core.py),
pairwise comparison (compare.py), golden results (golden.py), fuzzed inputs (fuzz_inputs.py, fuzz.py),
FP's dt table (fp_dt.py), the report on disk (report_io.py) and the pytest plugin (pytest_plugin.py).
The public face:

    from saf.deploy.verify import verify, format_report, VerifyReport
"""
from saf.deploy.verify.core import VerifyReport, format_report, verify

__all__ = ["VerifyReport", "format_report", "verify"]
