"""`saf bench readme`: re-run the README's fast headline numbers and diff them against the values
recorded in docs/readme_numbers.json (each with the commands that produce it and a tolerance).

A claim is a small record: `setup` (saf commands run first, once per bench run even when several
claims share them), `command` (a saf command that prints JSON, e.g. `eval ... --json`), `key` (a dotted
path into that JSON), the recorded `value` and its `tolerance` (absolute; strings and booleans must
match exactly). `{work}` in a command is a fresh temporary folder, removed afterwards. Claims marked
`slow` run only with --all. The commands run in this process through the same dispatcher as `saf`.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from saf.train.bench.cost import BenchError

TABLE = Path(__file__).resolve().parents[2] / "docs" / "readme_numbers.json"
FIELDS = {"name", "claim", "setup", "command", "key", "value", "tolerance", "slow"}


@dataclass(frozen=True)
class Claim:
    name: str
    claim: str                   # where it is stated and what it says ("README, make demo table: ...")
    setup: tuple                 # tuple of argv tuples
    command: tuple               # argv printing JSON
    key: str                     # dotted path into that JSON
    value: object                # the recorded number (or string / bool)
    tolerance: float = 0.0
    slow: bool = False


def _argv(v, where: str) -> tuple:
    if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
        raise BenchError(f"{where}: expected a non-empty list of strings (a saf command line)")
    return tuple(v)


def load_table(path) -> list:
    """The claims of a readme_numbers.json; BenchError naming the file and the entry otherwise."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise BenchError(f"--table {p}: no such file") from None
    except (OSError, ValueError) as e:
        raise BenchError(f"--table {p}: not readable JSON ({e})") from None
    rows = doc.get("numbers") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise BenchError(f"--table {p}: expected an object with a non-empty list \"numbers\"")
    claims, names = [], set()
    for i, r in enumerate(rows):
        where = f"--table {p}: numbers[{i}]"
        if not isinstance(r, dict) or not {"name", "command", "key", "value"} <= set(r) or set(r) - FIELDS:
            raise BenchError(f"{where}: needs name, command, key, value (optional: claim, setup, tolerance, slow; "
                             f"known fields: {', '.join(sorted(FIELDS))})")
        tol = r.get("tolerance", 0.0)
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not math.isfinite(tol) or tol < 0:
            raise BenchError(f"{where}: tolerance must be a number >= 0, got {tol!r}")
        if not isinstance(r["value"], (int, float, str, bool)) or not isinstance(r["key"], str) \
                or not isinstance(r["name"], str) or r["name"] in names:
            raise BenchError(f"{where}: name and key must be strings (names unique), value a number, string or bool")
        names.add(r["name"])
        setup = r.get("setup", [])
        if not isinstance(setup, list):
            raise BenchError(f"{where}: setup must be a list of saf command lines")
        claims.append(Claim(r["name"], str(r.get("claim", "")), tuple(_argv(s, f"{where}.setup") for s in setup),
                            _argv(r["command"], f"{where}.command"), r["key"], r["value"], float(tol),
                            bool(r.get("slow", False))))
    return claims


def _dig(obj, key: str):
    for part in key.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def differs(got, want, tol: float) -> bool:
    """Is `got` outside the recorded value's tolerance (numbers), or not equal to it (strings, bools)?"""
    if isinstance(want, (bool, str)):
        return not (type(got) is type(want) and got == want)         # 1 is no True, "1" no 1
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return True
    return not abs(float(got) - float(want)) <= tol


def bench_readme(run: Callable, table=TABLE, only: Optional[list] = None, include_slow: bool = False,
                 log: Callable[[str], None] = print) -> list:
    """One row per claim run: name, recorded, measured, tolerance, ok (and why not). `run(argv)` gives
    (exit code, stdout) of one saf command (the CLI passes its own dispatcher: bench sits below cli)."""
    claims = load_table(table)
    if only:
        unknown = [n for n in only if n not in {c.name for c in claims}]
        if unknown:
            raise BenchError(f"--only: unknown {', '.join(unknown)} (in {table}: {', '.join(c.name for c in claims)})")
        claims = [c for c in claims if c.name in only]
    elif not include_slow:
        claims = [c for c in claims if not c.slow]
    work = Path(tempfile.mkdtemp(prefix="saf-bench-readme-"))
    done, rows = {}, []
    try:
        for c in claims:
            got, note = None, ""
            for argv in (*c.setup, c.command):
                argv = tuple(a.replace("{work}", str(work)) for a in argv)
                if argv not in done:
                    log("$ saf " + " ".join(argv))
                    done[argv] = run(argv)
                rc, out = done[argv]
                if rc != 0:
                    note = f"`saf {' '.join(argv)}` exited {rc}"
                    break
            else:
                try:
                    got = _dig(json.loads(out), c.key)
                    note = "" if got is not None else f"no {c.key} in its JSON"
                except ValueError:
                    note = "its output is not JSON"
            ok = not note and not differs(got, c.value, c.tolerance)
            rows.append({"name": c.name, "claim": c.claim, "recorded": c.value, "measured": got,
                         "tolerance": c.tolerance, "ok": ok, "note": note or ("" if ok else "differs")})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def format_readme_rows(rows: list) -> str:
    def show(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [f"{'claim':<28} {'recorded':>10} {'measured':>10} {'tolerance':>9}  result",
             f"{'-' * 28} {'-' * 10} {'-' * 10} {'-' * 9}  ------"]
    for r in rows:
        lines.append(f"{r['name']:<28} {show(r['recorded']):>10} {show(r['measured']):>10} {r['tolerance']:>9g}  "
                     + ("ok" if r["ok"] else f"DIFFERS ({r['note']})"))
    bad = sum(not r["ok"] for r in rows)
    lines.append(f"{len(rows) - bad} of {len(rows)} claims reproduce" + ("" if not bad else f"; {bad} do not"))
    return "\n".join(lines)
