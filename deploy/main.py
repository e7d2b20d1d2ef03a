"""`saf`: one small dispatcher over the packages' own subcommands (train/cli.py, export/cli.py,
deploy/cli.py). User errors print one line and exit 2; never a traceback (SAF_DEBUG=1 shows it)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# (module, attribute with the user-error exception types); imported lazily so `saf train` never
# imports Lava and `saf --help` stays fast.
CLI_MODULES = ("saf.train.cli", "saf.export.cli", "saf.deploy.cli", "saf.deploy.bench_cli")


def _modules():
    mods = []
    for name in CLI_MODULES:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return mods


def main(argv=None) -> int:
    mods = _modules()
    parser = argparse.ArgumentParser(prog="saf", description="Spike Accumulation Forwarding toolchain: "
                                     "train SNNs, export to Loihi (Lava) / ONNX, verify fidelity.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    user_errors: tuple = (FileNotFoundError,)
    for m in mods:
        m.register(sub)
        user_errors += tuple(getattr(m, "USER_ERRORS", ()))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except user_errors as e:
        print(f"saf {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"saf {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback unless asked
        if os.environ.get("SAF_DEBUG"):
            raise
        print(f"saf {args.command}: internal error: {type(e).__name__}: {e} (set SAF_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
