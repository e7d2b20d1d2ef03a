"""`saf bench readme`: re-runs recorded claims and diffs them (deploy/bench/readme.py). A fake table on a
tiny run shows it passes on the right value and exits 1 on a wrong one; the real table is well formed
and every number it records is the one the README states."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saf_test_helpers.cli import user_error

from saf.deploy.bench.readme import TABLE, differs, load_table
from saf.deploy.main import main
from saf.train.checkpoint import best_of

torch.set_num_threads(1)
README = Path(__file__).resolve().parents[1] / "README.md"



@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-readme") / "run"
    assert main(["train", "--model", "mlp-digits", "--dataset", "digits", "--limit-train", "128", "--T", "3",
                 "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    ms = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return out, best_of(ms)["test_acc"]


def table(path: Path, rows: list) -> str:
    path.write_text(json.dumps({"numbers": rows}))
    return str(path)


def claim(name, run, value, tol):
    return {"name": name, "claim": "test", "command": ["eval", str(run), "--json"], "key": "saf_accuracy",
            "value": value, "tolerance": tol}


def test_a_wrong_recorded_value_fails(tiny_run, tmp_path, capsys):
    run, acc = tiny_run
    t = table(tmp_path / "t.json", [claim("right", run, acc, 0.0), claim("wrong", run, acc + 0.05, 0.01)])
    capsys.readouterr()
    assert main(["bench", "readme", "--table", t]) == 1
    out = capsys.readouterr().out
    rows = {l.split()[0]: l for l in out.splitlines() if l.startswith(("right", "wrong"))}
    assert rows["right"].endswith("ok") and "DIFFERS (differs)" in rows["wrong"]
    assert "1 of 2 claims reproduce; 1 do not" in out
    assert main(["bench", "readme", "--table", t, "--only", "right", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [x["name"] for x in r] == ["right"] and r[0]["measured"] == acc and r[0]["ok"]


def test_failing_command_and_missing_key_are_differences(tiny_run, tmp_path, capsys):
    run, acc = tiny_run
    bad_key = dict(claim("key", run, acc, 0.0), key="no.such.key")
    bad_cmd = dict(claim("cmd", run, acc, 0.0), command=["eval", str(tmp_path / "none"), "--json"])
    assert main(["bench", "readme", "--table", table(tmp_path / "t.json", [bad_key, bad_cmd])]) == 1
    out = capsys.readouterr().out
    assert "no no.such.key in its JSON" in out and "exited 2" in out


@pytest.mark.parametrize("rows,needle", [([], "non-empty"), ([{"name": "x"}], "numbers[0]"),
                                         ([dict(claim("a", "r", 0.5, 0.0), tolerance=-1)], "tolerance")])
def test_bad_table_is_one_line(tmp_path, capsys, rows, needle):
    user_error(capsys, ["bench", "readme", "--table", table(tmp_path / "t.json", rows)], str(tmp_path / "t.json"),
               needle)


def test_differs():
    assert not differs(0.9778, 0.9778, 0.0) and differs(0.98, 0.9778, 0.001) and not differs(0.98, 0.9778, 0.005)
    assert not differs(True, True, 0.0) and differs(False, True, 0.0) and differs(None, 0.5, 1.0)
    assert differs(1, True, 0.0) and differs(True, 1.0, 0.5) and differs("EXACT", "exact", 0.0)   # no coercion


def test_recorded_numbers_are_the_readmes():
    """Every recorded accuracy appears in the README as the percentage it records (two decimals)."""
    text = README.read_text()
    claims = load_table(TABLE)
    assert {c.name for c in claims} >= {"demo-saf-accuracy", "demo-loihi-exact", "fp-iris-accuracy"}
    for c in claims:
        if isinstance(c.value, float):
            assert f"{c.value * 100:.2f} %" in text or f"{c.value * 100:.2f}%" in text, (c.name, c.value)
