"""`saf`: one small dispatcher over the packages' own subcommands (deploy/cli/train.py, deploy/cli/export.py,
deploy/cli/run.py). User errors (core/errors.py SafError, and a missing file) print one line and exit 2;
never a traceback (SAF_DEBUG=1 shows it)."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from saf.core.errors import SafError, one_line

# the subcommands' modules, imported lazily so `saf train` never imports Lava and `saf --help` stays fast
CLI_MODULES = ("saf.deploy.cli.train", "saf.deploy.cli.export", "saf.deploy.cli.run", "saf.deploy.cli.bench",
               "saf.deploy.cli.nir", "saf.deploy.cli.finetune")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the command is, so that its cleanups run as for Ctrl-C (a temporary
    output directory is removed, the previous output stays as it was)."""


def _on_sigterm(signum, frame):
    raise Terminated()


class _UsageError(SafError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): `saf train: error: argument --T: ...`."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


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
    parser = _Parser(prog="saf", description="Spike Accumulation Forwarding toolchain: "
                                     "train SNNs, export to Loihi (Lava) / ONNX, verify fidelity.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for m in mods:
        m.register(sub)
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(e.one_line(), file=sys.stderr)
        return e.exit_code
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:                      # not the main thread: leave signals alone
        old_handler = None
    try:
        return int(args.func(args) or 0)
    except SafError as e:
        print(f"saf {args.command}: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except FileNotFoundError as e:
        print(f"saf {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"saf {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"saf {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback unless asked
        if os.environ.get("SAF_DEBUG"):
            raise
        print(f"saf {args.command}: internal error: {type(e).__name__}: {one_line(e)} (set SAF_DEBUG=1 for a "
              f"traceback)", file=sys.stderr)
        return 1
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


if __name__ == "__main__":
    sys.exit(main())
