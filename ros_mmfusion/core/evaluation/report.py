"""Evaluation reports (ROS-free): ``metrics.json`` for machines, ``report.md`` and ``report.html`` with plots.

The plots are PNG files next to the reports (matplotlib, Agg backend): per-class IoU bars, a latency histogram and a
latency timeline per output topic, one sample frame (camera | ground truth | prediction) and, with detection metrics,
precision-recall curves (BEV and 3D at the first IoU threshold, centre distance at 2 m). A "Models" table names the
network each node ran (``metrics["models"]``: weights kind, package, sha256 (12 hex digits here, all 64 in
``metrics.json``), backend, hardware), so every figure says what produced it.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class LatencySeries:
    """Per output topic: input stamps and arrival times (ns, same clock), for the plots."""

    stamps_ns: list[int] = field(default_factory=list)
    arrivals_ns: list[int] = field(default_factory=list)


@dataclass
class SampleFrame:
    rgb: np.ndarray  # HxWx3 uint8
    ground_truth: np.ndarray  # HxW class ids
    prediction: np.ndarray  # HxW class ids
    palette: np.ndarray  # (C, 3) uint8


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _clean(obj):
    """NaN/inf -> None so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def metrics_json(metrics: dict) -> str:
    """``metrics`` as strict JSON text (NaN and inf as null, numpy values as numbers), as ``metrics.json`` holds it."""
    return json.dumps(_clean(metrics), indent=2, default=_json_default) + "\n"


def _plot_iou(iou: dict[str, float | None], path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = [n for n, v in iou.items() if v is not None]
    values = [iou[n] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(names) + 1.5), 3.2))
    ax.bar(names, values, color="#4a7fb5")
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.set_title("per-class IoU")
    ax.tick_params(axis="x", labelrotation=45)
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_latency(series: dict[str, LatencySeries], hist_path: Path, timeline_path: Path) -> tuple[Path, Path]:
    import matplotlib.pyplot as plt

    fig_h, ax_h = plt.subplots(figsize=(6, 3.2))
    fig_t, ax_t = plt.subplots(figsize=(6, 3.2))
    for topic, s in series.items():
        if not s.stamps_ns:
            continue
        stamps = np.asarray(s.stamps_ns, np.int64)
        ms = (np.asarray(s.arrivals_ns, np.int64) - stamps) / 1e6
        ax_h.hist(ms, bins=min(40, max(5, ms.size // 2)), alpha=0.6, label=topic)
        ax_t.plot((stamps - stamps.min()) / 1e9, ms, marker=".", linewidth=0.8, label=topic)
    for ax, xlabel, title in ((ax_h, "latency (ms)", "latency histogram"),
                              (ax_t, "input stamp (s from first)", "latency timeline")):
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax_h.set_ylabel("messages")
    ax_t.set_ylabel("latency (ms)")
    for fig, path in ((fig_h, hist_path), (fig_t, timeline_path)):
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return hist_path, timeline_path


def _plot_sample(sample: SampleFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt

    palette = np.asarray(sample.palette, np.uint8)

    def colour(labels: np.ndarray) -> np.ndarray:
        return palette[np.clip(labels, 0, len(palette) - 1)]

    rgb = np.clip(sample.rgb.astype(np.float32) * 3.0 + 20, 0, 255).astype(np.uint8)  # night scenes are dark
    blended = (0.4 * rgb + 0.6 * colour(sample.prediction)).astype(np.uint8)
    panels = ((rgb, "camera (brightened)"), (colour(sample.ground_truth), "ground truth"),
              (blended, "prediction over camera"))
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.9))
    for ax, (image, title) in zip(axes, panels, strict=True):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_pr(det: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    panels = []
    for kind, label in (("bev", "BEV IoU"), ("3d", "3D IoU"), ("center_distance", "centre distance")):
        section = det.get(kind) or {}
        key = "2" if kind == "center_distance" and "2" in section else next(iter(section), None)
        if key is not None:
            panels.append((f"{label} {key}{' m' if kind == 'center_distance' else ''}", section[key]))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)), 3.2), squeeze=False)
    for ax, (title, section) in zip(axes[0], panels, strict=False):
        for name, curve in section["curves"].items():
            if curve["num_gt"] and curve["recall"]:
                ap = "-" if curve["AP"] is None else f"{curve['AP']:.2f}"
                ax.plot(curve["recall"], curve["precision"], marker=".", linewidth=1, label=f"{name} AP {ap}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_trajectory(traj: dict, path: Path) -> Path:
    """Ground-truth trajectory (odometry), the topological map's nodes, and where the robot was localised: a line
    from each ground-truth position to the node the policy chose there."""
    import matplotlib.pyplot as plt

    odom, nodes = np.asarray(traj["odom_xy"]), np.asarray(traj["nodes_xy"])
    truth, chosen = np.asarray(traj["truth_xy"]).reshape(-1, 2), np.asarray(traj["localised_node"], np.intp)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(odom[:, 0], odom[:, 1], "-", color="0.5", label="ground truth (/odom)")
    ax.scatter(nodes[:, 0], nodes[:, 1], marker="s", color="tab:blue", label="topomap nodes", zorder=3)
    for i, (x, y) in enumerate(nodes):
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for (x, y), k in zip(truth, chosen, strict=False):
        if 0 <= k < len(nodes):
            ax.plot([x, nodes[k, 0]], [y, nodes[k, 1]], "-", color="tab:orange", alpha=0.5, lw=1)
    ax.scatter(truth[:, 0], truth[:, 1], s=10, color="tab:orange", label="localised -> chosen node", zorder=4)
    ax.set_xlabel("x (m, odom)")
    ax.set_ylabel("y (m, odom)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8)
    ax.set_title("trajectory and localisation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_bev_sample(sample: dict, path: Path, bev_range: tuple[float, float, float, float] | None = None) -> Path:
    """One frame in bird's-eye view (LiDAR frame): ground-truth boxes in green, detections in red with scores. With
    ``bev_range`` (x_min, y_min, x_max, y_max, metres: the detector's range, where boxes are evaluated) the range is
    drawn dashed and the view is limited to it (2 m margin)."""
    import matplotlib.pyplot as plt

    from ros_mmfusion.core.codec.boxes import box_corners

    fig, ax = plt.subplots(figsize=(6, 6))
    for key, colour in (("gt", "tab:green"), ("det", "tab:red")):
        boxes = np.asarray(sample[f"{key}_boxes"], np.float64).reshape(-1, 7)
        if boxes.size:
            corners = box_corners(boxes[:, :3], boxes[:, 3:6], boxes[:, 6])[:, :4, :2]
            for i, quad in enumerate(corners):
                closed = np.vstack([quad, quad[:1]])
                ax.plot(closed[:, 0], closed[:, 1], "-", color=colour, lw=1.2,
                        label=("ground truth" if key == "gt" else "detections") if i == 0 else None)
                if key == "det":
                    ax.annotate(f"{sample['det_labels'][i]} {sample['det_scores'][i]:.2f}", quad.mean(axis=0),
                                fontsize=6, color=colour)
    ax.scatter([0], [0], marker="^", color="k", label="LiDAR")
    ax.set_xlabel("x (m, LiDAR frame)")
    ax.set_ylabel("y (m)")
    if bev_range is not None:
        x0, y0, x1, y1 = (float(v) for v in bev_range)
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], "--", color="0.5", lw=1, label="detector range")
        ax.set_xlim(x0 - 2, x1 + 2)
        ax.set_ylim(y0 - 2, y1 + 2)
        ax.set_aspect("equal", adjustable="box")
    else:
        ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("sample frame, bird's-eye view")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _protocol_tables(det: dict) -> list[list[list[str]]]:
    """KITTI: per kind a class x (level AP40, AP11) table; nuScenes: class x distance AP with the TP errors."""
    tables = []
    if det["protocol"] == "kitti":
        for kind in ("bev", "3d"):
            levels = list(det[kind])
            rows = [[f"class ({kind.upper()} AP, IoU)"] + [f"{lv} {ap}" for lv in levels for ap in ("AP40", "AP11")]]
            for name in det["classes"]:
                rows.append([f"{name} @{det['iou_thresholds'][name]:g}"]
                            + [_fmt(det[kind][lv][ap][name]) for lv in levels for ap in ("AP40", "AP11")])
            rows.append(["mean"] + [_fmt(det[kind][lv][f"m{ap}"]) for lv in levels for ap in ("AP40", "AP11")])
            tables.append(rows)
        return tables
    dists = [f"{d:g}" for d in det["distance_thresholds"]]
    metrics = list(det["tp_errors"])
    rows = [["class"] + [f"AP@{d} m" for d in dists] + ["AP"] + metrics]
    for name in det["classes"]:
        rows.append([name] + [_fmt(det["AP"][name][d]) for d in dists] + [_fmt(det["per_class_AP"][name])]
                    + [_fmt(det["tp_errors"][m][name]) for m in metrics])
    rows.append(["mean"] + [""] * len(dists) + [_fmt(det["mAP"])] + [_fmt(det["mean_tp_errors"][m]) for m in metrics])
    return [rows]


def _detection_tables(det: dict) -> list[list[list[str]]]:
    """One table per kind: class x threshold AP, with mAP as the last row (the protocol's tables for KITTI and
    nuScenes)."""
    if det.get("protocol") in ("kitti", "nuscenes"):
        return _protocol_tables(det)
    tables = []
    for kind, unit in (("bev", "BEV AP @IoU"), ("3d", "3D AP @IoU"), ("center_distance", "AP @centre distance m")):
        section = det.get(kind) or {}
        if not section:
            continue
        keys = list(section)
        rows = [[f"class ({unit})"] + keys]
        for name in det.get("classes", []):
            rows.append([name] + [_fmt(section[k]["AP"].get(name)) for k in keys])
        rows.append(["mAP"] + [_fmt(section[k]["mAP"]) for k in keys])
        tables.append(rows)
    return tables


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _latency_table(latency: dict[str, dict]) -> list[list[str]]:
    rows = [["topic", "messages", "expected", "dropped", "p50 ms", "p95 ms", "p99 ms", "max ms", "rate Hz"]]
    for topic, s in latency.items():
        rows.append([topic] + [_fmt(s.get(k)) for k in ("count", "expected", "dropped", "p50_ms", "p95_ms", "p99_ms",
                                                          "max_ms", "rate_hz")])
    return rows


def _iou_table(seg: dict) -> list[list[str]]:
    return [["class", "IoU"]] + [[n, _fmt(v)] for n, v in seg["IoU"].items() if v is not None]


SHA256_SHOWN = 12
"""Hex digits of a weights hash shown in reports (``metrics.json`` keeps all 64)."""


def model_line(record: dict[str, str]) -> str:
    """One line for a node's network record: weights kind and description, hash prefix, backend, hardware."""
    digest = record.get("sha256") or "-"
    return (f"{record.get('weights', '?')} weights, {record.get('description', '')} (sha256 "
            f"{digest[:SHA256_SHOWN]}), on {record.get('backend', '?')}, {record.get('hardware', '?')}")


def models_table(models: dict[str, dict[str, str]]) -> list[list[str]]:
    """Rows (header first) naming each node's network: node, weights, package, sha256 prefix, backend, hardware."""
    rows = [["node", "weights", "package", "sha256", "backend", "hardware"]]
    for node, r in models.items():
        rows.append([node, r.get("weights", "?"), r.get("package") or "-", (r.get("sha256") or "-")[:SHA256_SHOWN],
                     r.get("backend", "?"), r.get("hardware", "?")])
    return rows


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(out: Path, metrics: dict, latency_series: dict[str, LatencySeries] | None = None,
                 sample: SampleFrame | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, the plots, ``report.md`` and ``report.html`` under ``out``; returns their paths.

    ``metrics`` holds ``run`` (what was replayed), optional ``segmentation`` (SegmentationScores.as_dict() plus
    ``confusion``), optional ``detection`` (``DetectionEvaluator.results()``) and ``navigation``,
    ``latency`` ({topic: LatencyStats.as_dict()}) and ``notes`` (skipped metrics, with reasons).
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = _clean(metrics)
    paths: dict[str, Path] = {"metrics": out / "metrics.json"}
    paths["metrics"].write_text(metrics_json(metrics))
    figures: list[tuple[str, str]] = []  # (file name, caption)
    seg = metrics.get("segmentation")
    if seg and any(v is not None for v in seg["IoU"].values()):
        paths["iou_plot"] = _plot_iou(seg["IoU"], out / "iou_per_class.png")
        figures.append((paths["iou_plot"].name, "Per-class IoU"))
    if latency_series and any(s.stamps_ns for s in latency_series.values()):
        hist, timeline = _plot_latency(latency_series, out / "latency_histogram.png", out / "latency_timeline.png")
        paths["latency_histogram"], paths["latency_timeline"] = hist, timeline
        figures += [(hist.name, "Latency histogram (input stamp to arrival)"), (timeline.name, "Latency timeline")]
    det = metrics.get("detection")
    if det and det.get("protocol", "generic") == "generic":
        paths["pr_curves"] = _plot_pr(det, out / "pr_curves.png")
        figures.append((paths["pr_curves"].name, "Precision-recall curves (3D detection)"))
    if det:
        if det.get("sample_bev"):
            paths["bev_sample"] = plot_bev_sample(det["sample_bev"], out / "detection_sample_bev.png",
                                                  det.get("bev_range"))
            figures.append((paths["bev_sample"].name, "Sample frame with ground-truth and detected boxes (BEV)"))
    nav = metrics.get("navigation")
    if nav and nav.get("trajectory"):
        paths["trajectory"] = plot_trajectory(nav["trajectory"], out / "trajectory.png")
        figures.append((paths["trajectory"].name, "Trajectory, topomap nodes and localisation"))
    if sample is not None:
        paths["sample"] = _plot_sample(sample, out / "sample_frame.png")
        figures.append((paths["sample"].name, "Sample frame"))

    run = metrics.get("run", {})
    title = f"mmfusion eval: preset {run.get('preset', '?')} on {run.get('bag', '?')}"
    md = [f"# {title}", ""]
    md += [f"- {k}: {_fmt(v)}" for k, v in run.items() if not isinstance(v, dict | list)]
    md.append("")
    html_parts = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    html_parts += [f"<li>{html.escape(k)}: {html.escape(_fmt(v))}</li>" for k, v in run.items()
                   if not isinstance(v, dict | list)]
    html_parts.append("</ul>")
    if metrics.get("models"):
        rows = models_table(metrics["models"])
        md += ["## Models", "", _md_table(rows), ""]
        html_parts += ["<h2>Models</h2>", _html_table(rows)]
    if seg:
        convention = ("classes absent from ground truth and predictions counted as 0, SemanticKITTI"
                      if seg.get("miou_convention") == "all" else
                      "over classes present in ground truth or predictions, Cityscapes/mmseg")
        summary = (f"mIoU {_fmt(seg['mIoU'])} ({convention}), pixel accuracy {_fmt(seg['pixel_accuracy'])} over "
                   f"{seg.get('frames', '?')} frames (ignore label {seg.get('ignore_index')}; predictions outside the "
                   f"classes count as wrong: {seg.get('out_of_range_predictions', 0)} pixels)")
        md += ["## Segmentation", "", summary, "", _md_table(_iou_table(seg)), ""]
        html_parts += ["<h2>Segmentation</h2>", f"<p>{html.escape(summary)}</p>", _html_table(_iou_table(seg))]
    if det:
        nd = det.get("center_distance_mAP", {}).get("mAP")
        if det.get("protocol") == "kitti":
            summary = (f"KITTI protocol (official procedure: AP40 and AP11, IoU > per-class threshold, difficulty "
                       f"levels, DontCare) over {det.get('frames', '?')} frames")
        elif det.get("protocol") == "nuscenes":
            summary = (f"nuScenes protocol (nuscenes-devkit procedure) over {det.get('frames', '?')} frames: mAP "
                       f"{_fmt(det.get('mAP'))} over {len(det.get('classes', []))} classes, NDS {_fmt(det.get('NDS'))}"
                       f" (without AVE/AAE {_fmt(det.get('NDS_without_velocity_attribute'))})")
        else:
            summary = (f"{det.get('frames', '?')} frames, {det.get('interpolation')} interpolated AP (IoU), "
                       f"nuScenes-style centre-distance mAP {_fmt(nd)}; ground-truth boxes per class: "
                       + ", ".join(f"{k} {v}" for k, v in det.get("num_gt", {}).items()))
        md += ["## 3D detection", "", summary, ""]
        html_parts += ["<h2>3D detection</h2>", f"<p>{html.escape(summary)}</p>"]
        for rows in _detection_tables(det):
            md += [_md_table(rows), ""]
            html_parts.append(_html_table(rows))
    if metrics.get("navigation"):
        nav = metrics["navigation"]
        rows = [["metric", "value"]] + [[f"{part} {k}", _fmt(v)] for part in ("localisation", "waypoints")
                                        for k, v in (nav.get(part) or {}).items()]
        md += ["## Navigation", "", _md_table(rows), ""]
        html_parts += ["<h2>Navigation</h2>", _html_table(rows)]
    if metrics.get("latency"):
        rows = _latency_table(metrics["latency"])
        md += ["## Latency", "", _md_table(rows), ""]
        html_parts += ["<h2>Latency</h2>", _html_table(rows)]
    if metrics.get("notes"):
        md += ["## Notes", ""] + [f"- {n}" for n in metrics["notes"]] + [""]
        html_parts += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{html.escape(n)}</li>" for n in metrics["notes"]]
        html_parts.append("</ul>")
    if figures:
        md += ["## Plots", ""] + [f"![{cap}]({name})" for name, cap in figures] + [""]
        html_parts.append("<h2>Plots</h2>")
        html_parts += [f'<figure><img src="{html.escape(name)}" alt="{html.escape(cap)}">'
                       f"<figcaption>{html.escape(cap)}</figcaption></figure>" for name, cap in figures]
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(md))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
             "text-align:right}th{background:#eee}td:first-child{text-align:left}img{max-width:100%}")
    paths["html"] = out / "report.html"
    paths["html"].write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                             f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
                             + "\n".join(html_parts) + "\n</body></html>\n")
    return paths
