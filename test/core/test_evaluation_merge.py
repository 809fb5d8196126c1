"""Fleet evaluation's mergeable statistics (core/evaluation/merge.py) and bookkeeping (core/evaluation/fleet.py):
statistics of two halves of a run, stored as JSON and merged, give exactly the metrics of one evaluation over all
frames; the cache, conditions, bag discovery and the domain locks of launcher/fleet.py."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.detection3d.metrics import DetectionEvaluator
from ros_mmfusion.core.evaluation.merge import (
    EvaluationStatistics,
    LatencyHistogram,
    SegmentationStatistics,
    merge_all,
)
from ros_mmfusion.core.navigation.metrics import LocalisationAccumulator, WaypointAccumulator
from ros_mmfusion.core.segmentation.metrics import ConfusionAccumulator

CLASSES = ("car", "pedestrian")
NAMES = ["unlabeled", "road", "car", "person"]


def _frames(seed: int, count: int) -> list[dict]:
    """Random frames of every kind: segmentation masks, detection boxes with scores, navigation errors, latencies."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        gt_n, det_n = int(rng.integers(0, 4)), int(rng.integers(0, 5))

        def boxes(n):
            return np.column_stack([rng.uniform(-10, 10, (n, 2)), rng.uniform(-1, 1, n), rng.uniform(1, 4, (n, 3)),
                                    rng.uniform(-3, 3, n)])

        gt = boxes(gt_n)
        det = np.vstack([gt[: det_n // 2] + rng.normal(0, 0.3, (min(gt_n, det_n // 2), 7)), boxes(det_n)])
        frames.append({
            "gt_mask": rng.integers(0, 4, (6, 5)), "pred_mask": rng.integers(0, 4, (6, 5)),
            "gt": gt, "gt_labels": list(rng.choice(CLASSES, gt_n)), "det": det,
            "det_labels": list(rng.choice(CLASSES, len(det))),
            "scores": np.round(rng.uniform(0, 1, len(det)), 2),  # rounded: ties in score are ranked in order
            "index_error": int(rng.integers(-1, 6)), "node_xy": rng.uniform(-5, 5, (4, 2)),
            "truth_xy": rng.uniform(-5, 5, 2), "ade": float(rng.uniform(0, 2)),
            "latency_ns": [int(v) for v in rng.integers(-2_000_000, 3_000_000_000, 3)]})
    return frames


def _statistics(frames: list[dict]) -> EvaluationStatistics:
    """One evaluation over ``frames``, its accumulators fed the way a run feeds them."""
    confusion = ConfusionAccumulator(len(NAMES), 0)
    detection = DetectionEvaluator(classes=CLASSES, iou_thresholds=(0.3, 0.5), interpolation="r40")
    localisation = LocalisationAccumulator(tolerance=1)
    waypoints = WaypointAccumulator(0.25)
    latency = {"/out": LatencyHistogram()}
    for f in frames:
        confusion.add(f["gt_mask"], f["pred_mask"])
        detection.add_frame(f["gt"], f["gt_labels"], f["det"], f["det_labels"], f["scores"])
        localisation.add([f["index_error"]], f["node_xy"], [f["truth_xy"]])
        waypoints.ade.append(f["ade"])
        waypoints.fde.append(2 * f["ade"])
        latency["/out"].add(f["latency_ns"])
        latency["/out"].expected += 1
    return EvaluationStatistics(SegmentationStatistics(confusion, NAMES, len(frames)), detection, None, 0,
                                localisation, waypoints, latency)


def _through_json(stats: EvaluationStatistics) -> EvaluationStatistics:
    return EvaluationStatistics.from_state(json.loads(json.dumps(stats.to_state())))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), count=st.integers(1, 7), data=st.data())
def test_merging_two_halves_equals_one_evaluation_over_all_frames(seed, count, data):
    frames = _frames(seed, count)
    cut = data.draw(st.integers(0, count))
    whole = _statistics(frames).metrics()
    merged = _through_json(_statistics(frames[:cut])).merge(_through_json(_statistics(frames[cut:])))
    assert merged.metrics() == whole
    assert merged.bags == 2


def test_merge_leaves_its_inputs_unchanged_and_merge_all_keeps_order():
    a, b, c = (_statistics(_frames(seed, 3)) for seed in (1, 2, 3))
    before = json.dumps(a.to_state())
    merge_all([a, b, c])
    assert json.dumps(a.to_state()) == before
    assert merge_all([a, b, c]).metrics() == _statistics(_frames(1, 3) + _frames(2, 3) + _frames(3, 3)).metrics()
    assert merge_all([]) is None


def test_a_section_only_one_bag_has_is_kept_and_mismatched_label_sets_are_refused():
    seg_only = EvaluationStatistics(SegmentationStatistics(ConfusionAccumulator(4, 0), NAMES))
    seg_only.segmentation.confusion.add(np.ones((2, 2), int), np.ones((2, 2), int))
    nav_only = EvaluationStatistics(localisation=LocalisationAccumulator(0))
    nav_only.localisation.add([0], [[0, 0], [5, 0]], [[0.1, 0]])
    merged = seg_only.merge(nav_only).metrics()
    assert merged["segmentation"]["frames"] == 1 and merged["navigation"]["localisation"]["accuracy"] == 1.0
    other = EvaluationStatistics(SegmentationStatistics(ConfusionAccumulator(3, 0), NAMES[:3]))
    with pytest.raises(ValueError):
        seg_only.merge(other)


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(-10**7, 10**11), min_size=1, max_size=60), cut=st.integers(0, 60))
def test_latency_histogram_merges_exactly_and_its_percentiles_are_within_one_bin(values, cut):
    whole, first, second = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    whole.add(values)
    first.add(values[:cut])
    second.add(values[cut:])
    merged = LatencyHistogram.from_state(json.loads(json.dumps(first.to_state()))).merge(second)
    assert merged.results() == whole.results() and np.array_equal(merged.counts, whole.counts)
    ms = np.asarray(values) / 1e6
    for q in (50, 95, 99):
        exact = float(np.percentile(ms, q, method="higher"))
        approx = whole.percentile_ms(q)
        assert approx >= min(exact, 0.01) - 1e-9  # never below the sample (latencies under 0.01 ms share a bin)
        assert approx <= max(exact, 0.01) * 10 ** (1 / 50) + 1e-9, (q, exact, approx)
    assert whole.results()["max_ms"] == round(ms.max(), 3)
    assert math.isclose(whole.results()["mean_ms"], round(sum(values) / len(values) / 1e6, 3))


def test_empty_statistics_have_no_metric_sections():
    metrics = EvaluationStatistics(latency={"/out": LatencyHistogram()}).metrics()
    assert set(metrics) == {"latency"} and metrics["latency"]["/out"]["p50_ms"] is None


def test_statistics_of_another_format_are_refused():
    with pytest.raises(ValueError):
        EvaluationStatistics.from_state({"format": "something/else"})


# -- fleet bookkeeping ----------------------------------------------------------------------------------------------
def _fake_bag(path, scenario_yaml: str | None = None):
    path.mkdir(parents=True)
    (path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (path / "data.mcap").write_bytes(b"x" * 10)
    if scenario_yaml is not None:
        (path / "scenario.yaml").write_text(scenario_yaml)
    return path


def test_find_bags_takes_directories_and_globs_once_each_and_names_what_matches_nothing(tmp_path):
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.evaluation.fleet import find_bags

    a = _fake_bag(tmp_path / "day" / "a")
    b = _fake_bag(tmp_path / "day" / "b")
    c = _fake_bag(tmp_path / "night" / "deep" / "c")
    (tmp_path / "empty").mkdir()
    assert find_bags([str(tmp_path)]) == [a.absolute(), b.absolute(), c.absolute()]
    assert find_bags([str(tmp_path / "night"), str(tmp_path / "day" / "*"), str(a)]) == \
        [c.absolute(), a.absolute(), b.absolute()]
    for pattern, reason in ((str(tmp_path / "nope"), "no such directory"), (str(tmp_path / "empty"), "no rosbag2"),
                            (str(tmp_path / "x*"), "matches no rosbag2"),
                            (str(a / "data.mcap"), "not a directory")):
        with pytest.raises(ConfigError, match=reason):
            find_bags([pattern])


def test_conditions_come_from_scenario_yaml_and_from_the_sim_scenarios_lighting(tmp_path):
    from ros_mmfusion.core.evaluation.fleet import bag_conditions

    fleet = _fake_bag(tmp_path / "f", "scenario: highway\nconditions: {weather: rain}\ntime_of_day: dawn\n")
    sim = _fake_bag(tmp_path / "s", "generator: ros_mmfusion sim\nscenario: urban_night\n")
    fog = _fake_bag(tmp_path / "g", "generator: ros_mmfusion sim\nscenario: fog\n")
    other = _fake_bag(tmp_path / "o", "generator: someone else\nscenario: urban_night\n")
    broken = _fake_bag(tmp_path / "b", "scenario: [unclosed\n")
    assert bag_conditions(fleet) == {"scenario": "highway", "weather": "rain", "time_of_day": "dawn"}
    assert bag_conditions(sim) == {"scenario": "urban_night", "weather": "clear", "time_of_day": "night"}
    assert bag_conditions(fog) == {"scenario": "fog", "weather": "fog", "time_of_day": "day"}
    assert bag_conditions(other) == {"scenario": "urban_night", "weather": None, "time_of_day": None}
    assert bag_conditions(broken) == bag_conditions(tmp_path) == dict.fromkeys(("scenario", "weather", "time_of_day"))


def test_the_cache_gives_back_a_scored_bag_of_the_same_key_only(tmp_path):
    from ros_mmfusion.core.evaluation.fleet import BagResult, ResultCache, cache_key

    bag = _fake_bag(tmp_path / "bag")
    settings_json = {"preset": "segmentation", "rate": 1.0}
    key = cache_key(settings_json, {"seg.model_package": "abc"}, bag)
    assert key != cache_key(settings_json, {"seg.model_package": "abd"}, bag)
    assert key != cache_key({**settings_json, "rate": 0.5}, {"seg.model_package": "abc"}, bag)
    cache = ResultCache(tmp_path / "out" / "bags")
    assert cache.get(bag, key) is None
    stats = _statistics(_frames(4, 2))
    cache.put(BagResult(str(bag), "ok", key, seconds=1.5, statistics=stats, domain=7))
    hit = cache.get(bag, key)
    assert hit is not None and hit.cached and hit.domain == 7 and hit.statistics.metrics() == stats.metrics()
    assert cache.get(bag, "another key") is None
    (bag / "data.mcap").write_bytes(b"y" * 11)  # the recording changed: a new key
    assert cache_key(settings_json, {"seg.model_package": "abc"}, bag) != key
    cache.put(BagResult(str(bag), "failed", key, error="cannot read bag"))
    assert cache.get(bag, key) is None, "a failed bag is evaluated again"
    cache.path(bag).write_text("{ half written")
    assert cache.get(bag, key) is None


def test_concurrent_bag_processes_get_distinct_domains_released_when_they_end(tmp_path):
    import os

    from ros_mmfusion.launcher.fleet import DOMAIN_IDS, acquire_domain

    first, fd1 = acquire_domain(tmp_path)
    second, fd2 = acquire_domain(tmp_path, avoid=DOMAIN_IDS[1])
    assert first == DOMAIN_IDS[0] and second == DOMAIN_IDS[2]
    os.close(fd1)
    again, fd3 = acquire_domain(tmp_path)
    assert again == first
    for fd in (fd2, fd3):
        os.close(fd)


def test_offline_commands_take_a_free_domain_unless_the_user_set_one(tmp_path):
    """`mmfusion eval`, `closed-loop`, `bench-graph` and `demo` without ROS_DOMAIN_ID: each process claims a free
    domain (two runs at once hear nothing of each other) and says which; a user's ROS_DOMAIN_ID is kept; `run` never
    changes it."""
    import os
    import subprocess
    import sys

    from ros_mmfusion.cli.main import OWN_DOMAIN_COMMANDS

    assert {"eval", "closed-loop", "bench-graph", "demo"} == OWN_DOMAIN_COMMANDS and "run" not in OWN_DOMAIN_COMMANDS
    code = ("import os, sys; from ros_mmfusion.launcher.fleet import own_domain_unless_set; "
            "d = own_domain_unless_set(); print(d, os.environ.get('ROS_DOMAIN_ID'), flush=True); sys.stdin.read()")
    env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.stdout.readline().split() for p in procs]  # both hold their domain now (each waits on its stdin)
    for p in procs:
        p.communicate(timeout=60)
    assert all(p.returncode == 0 for p in procs)
    assert outs[0][0] == outs[0][1] and outs[1][0] == outs[1][1] and outs[0][0] != outs[1][0]  # held at once
    kept = subprocess.run([sys.executable, "-c", code], env={**env, "ROS_DOMAIN_ID": "42"}, capture_output=True,
                          text=True, timeout=60, input="")
    assert kept.stdout.split() == ["None", "42"]
