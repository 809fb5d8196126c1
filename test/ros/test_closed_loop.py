"""A short closed-loop route over real DDS: the navigation graph of the ``closed_loop`` preset (ViNT localisation and
waypoints from the odometry oracle, the waypoint controller) drives ``sim_robot`` to the goal of a freshly mapped
corridor route on simulated time; and ``mmfusion closed-loop``'s refusals. The full evaluation is a benchmark
(docs/navigation.md "Closed loop"), not a test."""
from __future__ import annotations

import json

import pytest

from ros_mmfusion.launcher.closed_loop import ClosedLoopSettings, run_closed_loop, table_lines
from test.cli.oneline import fails_with_one_line


def test_the_oracle_drives_a_short_corridor_route_to_its_goal(tmp_path, monkeypatch):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    settings = ClosedLoopSettings(routes=1, route_seconds=8.0, policies=("oracle",), size=(64, 48),
                                  real_time_factor=2.0)
    lines: list[str] = []
    report = run_closed_loop(settings, tmp_path, log=lines.append)
    trial = report["trials"][0]
    assert trial["ended"] == "goal" and trial["success"], trial
    assert trial["collisions"] == 0 and trial["commands_rejected"] == 0
    assert trial["cross_track_mean_m"] < 0.5 and trial["distance_to_goal_m"] <= settings.goal_radius
    assert 4.0 < trial["path_length_m"] < 16.0  # about the 8 m mapped, not a wander
    assert report["summary"]["oracle"]["success_rate"] == 1.0
    assert json.loads((tmp_path / "report.json").read_text())["driven_scenario"] == "indoor_corridor_pass2"
    assert (tmp_path / "trajectories.png").stat().st_size > 0
    assert (tmp_path / "topomap_seed201" / "topomap.yaml").is_file()
    assert table_lines(report)[1].split()[:3] == ["oracle", "1", "100%"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--scenario", "fog"], "invalid choice"),
    (["--routes", "0"], "routes must be 1..1000"),
    (["--route-seconds", "1"], "route_seconds 5..3600"),
    (["--set", "vint_navigation.radius=-3"], "radius"),
])
def test_closed_loop_refusals(tmp_path, capsys, argv, message):
    if argv[0] == "--scenario":
        from ros_mmfusion.cli.main import main

        with pytest.raises(SystemExit):
            main(["closed-loop", "--out", str(tmp_path / "r"), *argv])
        assert message in capsys.readouterr().err
    else:
        fails_with_one_line(capsys, ["closed-loop", "--out", str(tmp_path / "r"), *argv], message)
    assert not (tmp_path / "r").exists()


def test_each_policy_gets_its_vint_parameters_over_the_users():
    from ros_mmfusion.launcher.closed_loop import closed_loop_preset

    package = "models/vint_reduced_corridor"
    settings = ClosedLoopSettings(overrides={"vint_navigation": {"model_package": package, "radius": 3}})
    settings.check()  # the random policy with a --set package is not a package-and-variant clash
    params = {p: closed_loop_preset(settings, p, "MAP").nodes[1].parameters for p in ("default", "random", "oracle")}
    assert params["default"]["model_package"] == package and params["default"]["radius"] == 3
    assert (params["random"]["model_package"], params["random"]["weights"]) == ("", "")
    assert params["random"]["variant"] == "vint_reduced" and params["random"]["radius"] == 3
    assert params["oracle"]["distance_source"] == params["oracle"]["waypoint_source"] == "odometry"


def test_eval_closed_loop_is_the_closed_loop_command(tmp_path, capsys):
    """``mmfusion eval --closed-loop`` (the issue's naming) runs ``mmfusion closed-loop`` with the other options."""
    from ros_mmfusion.cli.main import resolve_aliases

    assert resolve_aliases(["eval", "--closed-loop", "--routes", "2"]) == ["closed-loop", "--routes", "2"]
    assert resolve_aliases(["eval", "--bag", "b"]) == ["eval", "--bag", "b"]
    fails_with_one_line(capsys, ["eval", "--closed-loop", "--out", str(tmp_path / "r"), "--routes", "0"],
                        "routes must be 1..1000")
    assert not (tmp_path / "r").exists()
