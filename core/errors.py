"""SafError: the one base class of every error saf raises for a user to act on (a bad file, flag, spec,
bundle or target). `saf` (deploy/cli/main.py) catches it and prints its message on one line, then exits
with its exit_code; anything else is an internal error. tests/test_layout.py checks every exception
class of the product derives from it."""
from __future__ import annotations


class SafError(Exception):
    """A refusal or failure the user can act on; the message names the file or flag and what is wrong."""
    exit_code = 2

    def one_line(self) -> str:
        return one_line(self)


def one_line(e: BaseException) -> str:
    """An error message on one line (a path or a library's message may carry newlines)."""
    return " ".join(str(e).split("\n")).strip() or type(e).__name__
