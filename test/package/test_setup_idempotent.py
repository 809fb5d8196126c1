"""`make setup` is idempotent: once done, make considers it up to date (a second `make test` reinstalls nothing)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_setup_is_up_to_date_after_it_ran():
    venv = Path(sys.prefix)
    if shutil.which("make") is None or not (venv / ".mmfusion-setup").is_file():
        pytest.skip("this venv was not made by `make setup`")
    proc = subprocess.run(["make", "-q", "-C", str(ROOT), f"VENV={venv}", "setup"], capture_output=True, text=True)
    assert proc.returncode == 0, "make would run the set-up again: " + proc.stdout + proc.stderr


def test_setup_reruns_when_a_requirement_changes(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    stamp = venv / ".mmfusion-setup"
    stamp.touch()
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", "setup"], capture_output=True, text=True)
    assert "pip install" not in dry.stdout, "a fresh stamp must mean nothing to do"
    old = 946684800  # 2000-01-01: every input is newer than this stamp
    os.utime(stamp, (old, old))
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", "setup"], capture_output=True, text=True)
    assert "pip install" in dry.stdout and "build_interfaces.py" in dry.stdout
