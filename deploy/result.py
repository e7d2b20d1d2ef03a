"""BackendResult lives in export/result.py (export's integer SAF form returns one too, and imports
flow train <- export <- deploy); re-exported here for deploy's backends."""
from saf.export.result import BackendResult

__all__ = ["BackendResult"]
