"""``mmfusion import kitti`` as a command: progress and summary, one line naming a missing file, --overwrite rules."""
from __future__ import annotations

import shutil

import pytest

from ros_mmfusion.cli.main import main
from test.cli.oneline import fails_with_one_line
from test.fixtures import require_real


@pytest.fixture
def partial(tmp_path):
    """Two frames of the real fixture, frame 000001's calibration removed."""
    kitti = require_real("kitti_object")
    root = tmp_path / "training"
    for sub, ext in (("image_2", "png"), ("velodyne", "bin"), ("calib", "txt"), ("label_2", "txt")):
        (root / sub).mkdir(parents=True)
        for name in ("000001", "000002"):
            if not (sub == "calib" and name == "000001"):
                shutil.copyfile(kitti / sub / f"{name}.{ext}", root / sub / f"{name}.{ext}")
    return root


def test_import_prints_progress_and_a_missing_file_is_one_line_naming_it(partial, tmp_path, capsys):
    out = tmp_path / "bag"
    fails_with_one_line(capsys, ["import", "kitti", str(partial.parent), "--out", str(out)],
                        str(partial / "calib" / "000001.txt"), "missing")
    assert not out.exists()
    shutil.copyfile(partial / "calib" / "000002.txt", partial / "calib" / "000001.txt")
    assert main(["import", "kitti", str(partial.parent), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "frame 2/2" in printed and "/ground_truth/boxes" in printed and "synthesized at 10 Hz" in printed
    assert {p.name for p in out.iterdir()} == {"metadata.yaml", "bag.mcap", "calibration.yaml", "dataset.yaml"}
    # a second import into it needs --overwrite, and replaces only a bag this importer wrote
    fails_with_one_line(capsys, ["import", "kitti", str(partial), "--out", str(out)], "--overwrite")
    assert main(["import", "kitti", str(partial), "--out", str(out), "--overwrite", "--max-frames", "1"]) == 0
    assert "frame 1/1" in capsys.readouterr().out
    (out / "notes.txt").write_text("mine")
    fails_with_one_line(capsys, ["import", "kitti", str(partial), "--out", str(out), "--overwrite"],
                        "refusing to touch")
    assert (out / "notes.txt").read_text() == "mine" and (out / "bag.mcap").is_file()


def test_not_a_kitti_folder_and_bad_raw_calibration_are_one_line(tmp_path, capsys):
    fails_with_one_line(capsys, ["import", "kitti", str(tmp_path), "--out", str(tmp_path / "b")], "not a KITTI folder")
    drive = tmp_path / "2011_09_26_drive_0001_sync"
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    (drive / "calib_cam_to_cam.txt").write_text("calib_time: 09-Jan-2012 13:57:47\nP_rect_02: 1 2 3\n")
    fails_with_one_line(capsys, ["import", "kitti", str(drive), "--out", str(tmp_path / "b")],
                        "calib_velo_to_cam.txt", "missing")
    (drive / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\nT: 0 0 0\n")
    fails_with_one_line(capsys, ["import", "kitti", str(drive), "--out", str(tmp_path / "b")],
                        "calib_cam_to_cam.txt", "S_rect_02")
