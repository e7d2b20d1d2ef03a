"""`saf` and `python -m saf.deploy.main` (what torchrun -m runs): the command line lives in deploy/cli/
(main.py parses and dispatches to train.py, export.py, run.py and bench.py)."""
import sys

from saf.deploy.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
