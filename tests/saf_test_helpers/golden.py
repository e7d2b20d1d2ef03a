"""The pinned demo network the golden tests compare against (tests/golden/demo)."""
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "demo"
