"""The GPU check script (``tools/gpu_check.py``): its CPU dry run (the same code, CPU providers) in every test run,
and the CUDA twins against the CPU where a GPU is present (skipped here, never failed: CI has no GPU)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    return gpu_check


@pytest.fixture(scope="module")
def work(tmp_path_factory, network_onnx) -> Path:
    """The work folder holding the registry exports the hygiene tests already made (the script reuses them)."""
    folder = tmp_path_factory.mktemp("gpu_check_work")
    shutil.copy(network_onnx("cmx_mit_b0", (64, 96)), folder / "cmx_mit_b0_64x96.onnx")
    shutil.copy(network_onnx("vint_reduced"), folder / "vint_reduced_64x85.onnx")
    return folder


def test_dry_run_compares_every_network_with_the_cpu_and_writes_the_table(work, tmp_path, torch_single_thread):
    out = tmp_path / "out"
    assert _tool().main(["--dry-run", "--tiny", "--runs", "1", "--window", "3", "--threads", "1", "--out", str(out),
                         "--work", str(work)]) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    rows = report["rows"]
    models = {r["model"].split()[1] for r in rows}
    assert models == {"cmx_mit_b0", "pillar_encoder", "backbone_head", "vint_reduced"}
    ran = [r for r in rows if r["status"] != "SKIP"]
    assert {(r["backend"], r["precision"]) for r in ran} == {("onnxruntime", "fp32"), ("torch", "fp32")}
    assert all(r["status"] == "PASS" and r["relative_rmse"] < 1e-3 and r["median_ms"] > 0 for r in ran), ran
    table = (out / "gpu_check.md").read_text()
    assert report["device"] in table and "| model | backend | precision |" in table and report["dry_run"]


def test_a_twin_that_disagrees_with_the_cpu_fails_its_row():
    import numpy as np

    from ros_mmfusion.core.inference.gpu_check import TOLERANCE, compare

    reference = {"y": np.linspace(-1, 1, 100)}
    assert compare(reference, {"y": reference["y"]}) == (0.0, 0.0)
    rmse, worst = compare(reference, {"y": reference["y"] * 1.1})
    assert rmse > TOLERANCE["fp16"] and worst == pytest.approx(0.1)


def test_cuda_twins_match_the_cpu(work, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the CUDA twins run on a GPU machine (tools/gpu_check.py, docs/benchmarks.md)")
    from ros_mmfusion.core.inference.gpu_check import run_check

    report = run_check(work, tiny=True, runs=2, window=3)
    ran = [r for r in report.rows if r.status != "SKIP"]
    assert any(r.backend == "torch-cuda" for r in ran)
    assert not report.failed, [(r.model, r.backend, r.precision, r.relative_rmse) for r in report.failed]
