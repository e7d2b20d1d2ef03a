"""Output directories (training runs, export bundles, demo folders, verify reports): the one place
that decides what `--force` may replace and how a directory is replaced.

- A directory is replaced only if saf wrote it: its marker file is one saf writes (recognised by
  content, not only by name) and every entry in it is a name saf writes for that kind of output.
  Anything else (a user's folder, a run with the user's notes added) is refused in one line.
- New output is built in a temporary sibling `.NAME.saf-tmp-*` and swapped in only on success;
  until then the old directory is untouched. A failure, Ctrl-C or SIGTERM (deploy/cli/main.py turns
  it into an exception) removes the temporary sibling; SIGINT/SIGTERM arriving during the swap
  itself are handled once it is done, so it completes or never starts. (SIGKILL cannot be caught: it may leave the hidden
  temporary sibling behind, never a damaged old output.)

Lives in core/, the floor every package may import, because train, export and deploy all use it.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from saf.core.files import current_umask
from saf.core.errors import SafError

TMP_TAG = ".saf-tmp-"
OLD_TAG = ".saf-old-"


class OutputError(SafError):
    """An output path saf will not write or replace; the message names the path and the reason."""


@dataclass(frozen=True)
class OutputKind:
    """One kind of directory saf writes."""
    name: str                                   # "saf training run", shown in messages
    marker: str                                 # the file that marks it
    recognise: Callable[[Path], bool]           # is this marker file one saf wrote?
    members: tuple                              # every entry name saf writes in it
    children: tuple = ()                        # (entry name, OutputKind) sub-outputs, checked recursively


def _foreign_entry(d: Path, kind: OutputKind) -> Optional[str]:
    """The first entry of `d` that saf did not write as `kind` (None when every entry is ours)."""
    children = dict(kind.children)
    for p in sorted(d.iterdir()):
        name = p.name
        if name in children:
            if p.is_symlink() or not p.is_dir():
                return name
            bad = why_not_ours(p, children[name])
            if bad:
                return f"{name}/" + ("" if bad.startswith("(") else bad)
            continue
        ours = name in kind.members or any(name.startswith(f".{m}.") for m in kind.members)
        if not ours or p.is_symlink() or (p.is_dir() and name in kind.members):
            return name
    return None


def why_not_ours(d: Path, kind: OutputKind) -> Optional[str]:
    """None when `d` is a `kind` output saf wrote, else the reason (an entry name, or '(no marker)')."""
    marker = d / kind.marker
    try:
        if not (marker.is_file() and not marker.is_symlink() and kind.recognise(marker)):
            return "(no marker)"
        return _foreign_entry(d, kind)
    except OSError as e:
        return f"(unreadable: {e.strerror or e})"


def _is_empty_dir(p: Path) -> bool:
    try:
        return p.is_dir() and not any(p.iterdir())
    except OSError as e:
        raise OutputError(f"{p}: cannot read ({e.strerror or e})") from None


def check_target(out: Path, kinds: tuple, force: bool, flag: str = "--out") -> None:
    """Refuse, before any work, an output path saf may not write: a file, a non-empty directory
    without --force, or (with --force) a directory that is not a saf output of one of `kinds`."""
    out = Path(out)
    if out.is_symlink():
        raise OutputError(f"{flag} {out}: is a symbolic link; give the real directory")
    _check_parent(out, flag)                  # the new output is built beside --out, in its parent
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{flag} {out}: exists and is not a directory")
    if _is_empty_dir(out):
        return
    what = " or ".join(k.name for k in kinds)
    if not force:
        raise OutputError(f"{flag} {out}: directory exists and is not empty (use --force to replace a {what})")
    reasons = [why_not_ours(out, k) for k in kinds]
    if all(reasons):
        r = next((r for r in reasons if not r.startswith("(")), None)
        detail = f"it holds {r!r}, which saf did not write" if r else f"it holds no {kinds[0].marker} written by saf"
        raise OutputError(f"{flag} {out}: --force replaces only a {what}, and {detail}; "
                          f"nothing was changed (move it away or choose another {flag})")


def check_file_target(path, flag: str) -> Path:
    """An output FILE (a PNG, a report, a JSON): not a directory, in a directory saf can write."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OutputError(f"{flag} {path}: exists and is not a regular file")
    _check_parent(path, flag)
    return path


def _check_parent(out: Path, flag: str) -> None:
    for anc in out.parents:
        if anc.exists():
            if not anc.is_dir():
                raise OutputError(f"{flag} {out}: {anc} is not a directory")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise OutputError(f"{flag} {out}: {anc} is not writable")
            return


def make_dirs(path: Path) -> Optional[Path]:
    """mkdir -p; returns the topmost directory it created (None if `path` existed), so a failure
    can remove exactly what it made."""
    path = Path(path)
    top = None
    for anc in [*reversed(path.parents), path]:
        if not anc.exists():
            top = top or anc
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create directory ({e.strerror or e})") from None
    return top


def remove_made(top: Optional[Path]) -> None:
    """Undo make_dirs: remove the directories it created (everything under them is ours)."""
    if top is not None:
        shutil.rmtree(top, ignore_errors=True)


class Staged:
    """`with Staged(out, kinds, force) as tmp:` write into `tmp`; on a clean exit it replaces `out`
    (refused unless check_target allows it); on any exception, Ctrl-C included, `tmp` is removed and
    `out` is as it was."""

    def __init__(self, out, kinds: tuple, force: bool = False, flag: str = "--out"):
        self.out, self.kinds, self.force, self.flag = Path(out), kinds, force, flag
        self.path: Optional[Path] = None
        self._made: Optional[Path] = None

    def __enter__(self) -> Path:
        check_target(self.out, self.kinds, self.force, self.flag)
        self._made = make_dirs(self.out.parent)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.out.name}{TMP_TAG}", dir=self.out.parent))
        except OSError as e:
            remove_made(self._made)
            raise OutputError(f"{self.flag} {self.out}: cannot write beside it ({e.strerror or e})") from None
        os.chmod(self.path, 0o777 & ~current_umask())     # mkdtemp creates 0700; give the usual mode
        return self.path

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self.commit()
            except OutputError as e:                      # --out changed under us: keep both
                self._keep_new(e)
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
        return False

    def _keep_new(self, why: OutputError) -> None:
        """The new output is complete but --out may no longer be replaced (someone wrote into it
        meanwhile): leave --out alone and keep the new output in a visible sibling."""
        kept = Path(tempfile.mkdtemp(prefix=f"{self.out.name}.saf-new-", dir=self.out.parent))
        os.rename(self.path, kept / self.out.name)
        self.path = None
        raise OutputError(f"{why}; the new output is complete and was kept in {kept / self.out.name}") from None

    def abort(self) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if not self.out.exists():
            remove_made(self._made)
        self.path = None

    def commit(self) -> None:
        check_target(self.out, self.kinds, self.force, self.flag)   # still ours (nobody wrote in meanwhile)?
        with signals_deferred():
            swap_in(self.path, self.out)
        self.path = None


def swap_in(new: Path, out: Path) -> None:
    """Put directory `new` at `out`; an existing `out` is moved aside first, put back if the rename
    fails, and removed only once `new` is in place."""
    if not out.exists():
        os.rename(new, out)
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}{OLD_TAG}", dir=out.parent))
    os.rename(out, holder / out.name)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(holder / out.name, out)
        os.rmdir(holder)
        raise
    shutil.rmtree(holder, ignore_errors=True)


class signals_deferred:
    """SIGINT/SIGTERM arriving inside the block are recorded and handed to their own handlers once
    it ends. Python runs signal handlers in the main thread whichever thread the OS delivered the
    signal to, so swapping the Python-level handlers (not a per-thread signal mask) is what makes
    this hold in a process with other threads (torch, Lava)."""
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.pending, self.old = [], {}
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.old[s] = signal.signal(s, lambda signum, frame: self.pending.append((signum, frame)))
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        for signum, frame in self.pending[:1]:
            handler = self.old[signum]
            if callable(handler):
                handler(signum, frame)                  # e.g. raises KeyboardInterrupt / Terminated
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)            # the default action, now that the swap is done
        return False
