"""`mmfusion sim`: bad arguments exit 2 with one clear line; nothing but our own bags is ever deleted."""
from __future__ import annotations

import pytest

from ros_mmfusion.cli import main as cli


@pytest.fixture
def mmfusion(monkeypatch, capsys):
    """Run ``mmfusion sim ...`` through the real entry point (only the sim subcommand registered)."""
    monkeypatch.setattr(cli, "COMMANDS", {"sim": "sim"})

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = cli.main(["sim", *argv])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--scenario", "mars", "--out", "X"], "unknown scenario 'mars'"),
        (["--scenario", "fog", "--out", "X", "--size", "640by480"], "is not WIDTHxHEIGHT"),
        (["--scenario", "fog", "--out", "X", "--frames", "0"], "--frames must be a positive"),
        (["--scenario", "fog", "--out", "X", "--frames", "-3"], "--frames must be a positive"),
        (["--scenario", "fog", "--out", "X", "--rate", "0"], "--rate must be between"),
        (["--scenario", "fog", "--out", "X", "--seed", "-1"], "seed must be a non-negative integer"),
        (["--out", "X"], "--scenario is required"),
        (["--scenario", "fog"], "--out DIR is required"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(mmfusion, tmp_path, argv, message):
    argv = [str(tmp_path / "X") if a == "X" else a for a in argv]
    code, _, err = mmfusion(*argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "X").exists()


@pytest.mark.parametrize("argv", [["--storage", "rosbag"], ["--beams", "48"], ["--frames", "ten"]])
def test_argparse_rejects_bad_choices_with_exit_2(mmfusion, tmp_path, argv):
    code, _, err = mmfusion("--scenario", "fog", "--out", str(tmp_path / "b"), *argv)
    assert code == 2 and "error" in err


def test_a_directory_that_is_not_our_bag_is_never_deleted(mmfusion, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    code, _, err = mmfusion("--scenario", "urban_day", "--frames", "1", "--out", str(out), "--size", "32x24")
    assert code == 2 and "--overwrite" in err
    code, _, err = mmfusion("--scenario", "urban_day", "--frames", "1", "--out", str(out), "--size", "32x24",
                            "--overwrite")
    assert code == 2 and "not a bag written by mmfusion sim" in err
    assert (out / "thesis.tex").read_text() == "do not delete"
    (out / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (out / "scenario.yaml").write_text("generator: ros_mmfusion sim\n")
    code, _, err = mmfusion("--scenario", "urban_day", "--frames", "1", "--out", str(out), "--size", "32x24",
                            "--overwrite")
    assert code == 2 and (out / "thesis.tex").exists()


def test_records_and_replaces_only_its_own_bag(mmfusion, tmp_path):
    out = tmp_path / "bag"
    out.mkdir()  # an empty directory is fine
    args = ("--scenario", "indoor_corridor", "--frames", "2", "--out", str(out), "--size", "32x24", "--seed", "1")
    code, stdout, _ = mmfusion(*args)
    assert code == 0
    assert "wrote 2 frames" in stdout and "/lidar/points" in stdout and "calibration" in stdout
    assert (out / "calibration.yaml").is_file() and (out / "metadata.yaml").is_file()
    code, _, err = mmfusion(*args)
    assert code == 2 and "--overwrite" in err
    code, stdout, _ = mmfusion(*args, "--overwrite", "--storage", "sqlite3")
    assert code == 0
    assert sorted(p.suffix for p in out.iterdir()) == [".db3", ".yaml", ".yaml", ".yaml"]


def test_list_shows_every_scenario(mmfusion):
    code, stdout, _ = mmfusion("--list")
    assert code == 0
    for name in ("urban_day", "urban_night", "fog", "indoor_corridor", "indoor_corridor_pass2"):
        assert name in stdout
