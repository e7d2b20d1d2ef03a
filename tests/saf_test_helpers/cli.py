"""The check every CLI test makes of a refusal: exit code 2, one line on stderr, no traceback."""
from __future__ import annotations

from saf.deploy.main import main


def user_error(capsys, argv, *needles):
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]
