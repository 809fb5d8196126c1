"""The check every command's refusal must pass: exit 2 and exactly one line on stderr, no traceback."""
from __future__ import annotations

from ros_mmfusion.cli.main import main


def fails_with_one_line(capsys, argv: list[str], *needles: str) -> str:
    """Run ``mmfusion argv`` in-process; assert exit 2, one stderr line holding every needle; return that line."""
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err
