"""Dynamic pillars in numpy: the pipeline of the nuScenes CenterPoint-PointPillar (``centerpoint_pillar_nuscenes``).

The same stages as ``PillarDetector`` (``pipeline.STAGES``), with OpenPCDet's ``DynamicPillarVFE`` semantics
(``core/models/centerpoint.py`` is the reference module, tested against the upstream fixture) done in numpy::

    points (structured x, y, z, intensity, or (N, 5) x, y, z, intensity, time lag; a cloud without lag: lag 0)
      -> crop        finite points whose cell ``floor((xy - range_min) / voxel)`` (float32) lies in the grid; z is
                     not checked (upstream's dataset mask and the VFE's grid mask together)
      -> pillarize   pillars = the occupied cells, ordered by ``(cx, cy)``, no point cap, no pillar limit; the
                     points regrouped pillar by pillar (stable: input order within a pillar)
      -> decorate    11 features per point: x, y, z, intensity, lag, offsets from the pillar's point mean and from
                     its column centre (``decorate_dynamic_pillars``)
      -> encoder     ``DynamicPillarEncoder``: the two ``PFNLayerV2`` (Linear with its BatchNorm folded in, ReLU,
                     segment maximum over each pillar's points) -> ``(P, 64)``; numpy on every backend
      -> scatter     embeddings onto the ``(1, 64, ny, nx)`` BEV canvas (``scatter_to_bev``)
      -> backbone_head  the dense part (``backbone_head.onnx``, ``CenterPointPillar.dense()``)           [backend]
      -> decode, nms  per centre head, as ``PillarDetector`` (``CenterHeadDecoder``): boxes ``(N, 9)`` with
                     velocity ``vx, vy`` (m/s, cloud frame)

Why numpy for the VFE: its scatter-max and scatter-mean over a data-dependent number of points per pillar have no
portable dense ONNX form (and no TensorRT one); with the points grouped pillar by pillar the mean is a weighted
``np.bincount`` and the maximum ``segment_max`` (vectorised over pillars, one step per point rank; exact), and the two
per-point linear layers are small matrix products (the second split so that the pillar maximum is multiplied once
per pillar, not once per point).

The encoder's weights are the deployment artifact ``pillar_vfe.npz`` (``vfe_arrays``: the folded ``weight_<i>``,
``bias_<i>`` of each layer), exported beside ``backbone_head.onnx`` (``artifacts.onnx_files``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ros_mmfusion.core.detection3d.pillarize import PillarGrid
from ros_mmfusion.core.detection3d.pipeline import PillarBackends, PillarDetector, _Frame, _Laps
from ros_mmfusion.core.detection3d.preprocess import point_features
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import BackendInfo
from ros_mmfusion.core.models.pointpillars import BN_EPS, scatter_to_bev

if TYPE_CHECKING:
    from ros_mmfusion.core.models.centerpoint import DynamicPillarsConfig

VFE_WEIGHTS = "pillar_vfe.npz"
"""The dynamic pillar encoder's folded weights, beside ``backbone_head.onnx``."""


@dataclass(frozen=True)
class GroupedPillars:
    """Points grouped into dynamic pillars, pillar by pillar.

    ``points`` ``(M, C)`` float32 the points in the grid, regrouped so that each pillar's points are contiguous
    (input order within a pillar); ``source`` ``(M,)`` int64 the row of each in the cropped input; ``cells`` ``(M, 2)``
    int64 ``(cx, cy)``; ``pillar_index`` ``(M,)`` int64 non-decreasing; ``starts`` ``(P,)`` int64 the first row of
    each pillar; ``coords`` ``(P, 4)`` int32 ``(batch 0, z 0, cy, cx)``, pillars by ascending ``(cx, cy)``.
    """

    points: np.ndarray
    source: np.ndarray
    cells: np.ndarray
    pillar_index: np.ndarray
    starts: np.ndarray
    coords: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.shape[0])


def grid_cells(points: np.ndarray, grid: PillarGrid) -> tuple[np.ndarray, np.ndarray]:
    """``(cells (N, 2) int64 (cx, cy), inside (N,) bool)`` of ``(N, 3+)`` float32 points: the cell is
    ``floor((xy - range_min) / voxel_size)`` in float32 as upstream, ``inside`` where it lies in ``[0, nx) x [0, ny)``
    and x, y, z are finite (z itself is not range-checked)."""
    lo = grid.range_min[:2].astype(np.float32)
    size = np.asarray(grid.voxel_size[:2], dtype=np.float32)
    nx, ny, _ = grid.grid_size
    xyz = points[:, :3]
    finite = np.isfinite(xyz).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.floor((np.where(finite[:, None], xyz[:, :2], lo - 1) - lo) / size)
    inside = finite & (scaled[:, 0] >= 0) & (scaled[:, 1] >= 0) & (scaled[:, 0] < nx) & (scaled[:, 1] < ny)
    cells = np.zeros((len(points), 2), np.int64)
    cells[inside] = scaled[inside].astype(np.int64)
    return cells, inside


def group_pillars(points: np.ndarray, cells: np.ndarray, grid: PillarGrid) -> GroupedPillars:
    """The in-grid ``points`` ``(M, C)`` with their ``cells`` ``(M, 2)`` grouped into pillars (see
    ``GroupedPillars``): a counting pass over the ``nx * ny`` cells, no sort of the keys' values."""
    nx, ny, _ = grid.grid_size
    keys = cells[:, 0] * ny + cells[:, 1]
    counts = np.bincount(keys, minlength=nx * ny)
    occupied = np.flatnonzero(counts)
    pillar_of_key = np.cumsum(counts > 0) - 1
    index = pillar_of_key[keys]
    order = np.argsort(index, kind="stable")
    sizes = counts[occupied]
    starts = np.zeros(len(occupied), np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    coords = np.zeros((len(occupied), 4), np.int32)
    coords[:, 2], coords[:, 3] = occupied % ny, occupied // ny
    return GroupedPillars(points[order], order, cells[order], index[order], starts, coords)


def segment_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(P, C)`` maximum of the rows of ``values`` ``(M, C)`` over each segment ``starts[p] .. starts[p + 1] - 1``
    (``starts`` increasing from 0, every segment non-empty): exact, memory ``O(P * C)``.

    ``np.maximum.reduceat`` pays a per-segment overhead (10 ms for 5k pillars here); this takes the segments in
    decreasing length and, for rank ``r = 1, 2, ...``, folds the ``r``-th row of every segment still that long into
    its maximum: as many vectorised steps as the longest segment has rows, ``M * C`` work in all.
    """
    counts = np.diff(np.append(starts, len(values)))
    by_length = np.argsort(-counts, kind="stable")
    first = starts[by_length]
    out = values[first]
    sorted_counts = counts[by_length]
    for rank in range(1, int(sorted_counts[0]) if len(counts) else 0):
        n = int(np.searchsorted(-sorted_counts, -rank, side="left"))  # segments with more than ``rank`` rows
        np.maximum(out[:n], values[first[:n] + rank], out=out[:n])
    result = np.empty_like(out)
    result[by_length] = out
    return result


def decorate_grouped(pillars: GroupedPillars, grid: PillarGrid, use_absolute_xyz: bool = True,
                     with_distance: bool = False) -> np.ndarray:
    """``(M, C')`` float32 input of the pillar feature net, one row per point of ``pillars`` (in its grouped order).

    As ``core/models/centerpoint.decorate_dynamic_pillars``: the point features (without x, y, z unless
    ``use_absolute_xyz``), offsets from the mean of the pillar's points, offsets from the pillar's column centre
    ``c * voxel + (voxel / 2 + range_min)`` (two float32 operations, as upstream), then ``|xyz|`` when
    ``with_distance``. Means are summed in float64 (upstream sums in float32: within 1e-5 m)."""
    xyz = pillars.points[:, :3]
    size = len(pillars)
    counts = np.bincount(pillars.pillar_index, minlength=size)
    mean = np.stack([np.bincount(pillars.pillar_index, weights=xyz[:, k], minlength=size) for k in range(3)], axis=1)
    mean = (mean / np.maximum(counts, 1)[:, None]).astype(np.float32)
    f_cluster = xyz - mean[pillars.pillar_index]
    voxel, low = grid.voxel_size, [float(v) for v in grid.range_min]
    cells = pillars.cells.astype(np.float32)
    f_center = np.empty_like(xyz)
    for axis in (0, 1):
        centre = cells[:, axis] * np.float32(voxel[axis]) + np.float32(voxel[axis] / 2 + low[axis])
        f_center[:, axis] = xyz[:, axis] - centre
    f_center[:, 2] = xyz[:, 2] - np.float32(voxel[2] / 2 + low[2])
    parts = [pillars.points if use_absolute_xyz else pillars.points[:, 3:], f_cluster, f_center]
    if with_distance:
        parts.append(np.linalg.norm(xyz, axis=1, keepdims=True).astype(np.float32))
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------------ the encoder


def vfe_arrays(state: Mapping[str, object], num_layers: int, use_norm: bool = True,
               prefix: str = "vfe.pfn_layers") -> dict[str, np.ndarray]:
    """The folded weights of the ``num_layers`` ``PFNLayerV2`` of a CenterPoint state_dict (tensors or arrays):
    ``weight_<i>`` ``(C_in, C_out)`` and ``bias_<i>`` ``(C_out,)`` float32 with the layer's eval-mode BatchNorm
    (eps ``BN_EPS``) folded into its Linear, so that a layer is ``relu(x @ weight + bias)``."""
    def array(key: str) -> np.ndarray:
        value = state[key]
        value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        return value.astype(np.float64)

    out: dict[str, np.ndarray] = {}
    for i in range(num_layers):
        try:
            weight = array(f"{prefix}.{i}.linear.weight").T  # (in, out)
            if use_norm:
                gamma, beta = array(f"{prefix}.{i}.norm.weight"), array(f"{prefix}.{i}.norm.bias")
                mean, var = array(f"{prefix}.{i}.norm.running_mean"), array(f"{prefix}.{i}.norm.running_var")
                scale = gamma / np.sqrt(var + BN_EPS)
                weight, bias = weight * scale, beta - mean * scale
            else:
                bias = array(f"{prefix}.{i}.linear.bias")
        except KeyError as exc:
            raise ConfigError(f"the state_dict lacks {exc!s} of the dynamic pillar encoder") from None
        out[f"weight_{i}"], out[f"bias_{i}"] = weight.astype(np.float32), bias.astype(np.float32)
    return out


class DynamicPillarEncoder:
    """The dynamic pillar feature net in numpy, a ``Backend``: ``run({"point_features": (M, C_in),
    "pillar_index": (M,), "pillar_starts": (P,)})`` -> ``{"pillar_features": (P, C_out)}``, points grouped pillar by
    pillar (``GroupedPillars``; every pillar holds a point).

    ``arrays``: ``vfe_arrays``. Every layer is ``y = relu(x @ W + b)``, pooled by a segment maximum over each pillar;
    a layer before the last passes ``[y, pooled[pillar]]`` on, which the next layer multiplies as
    ``y @ W[:c] + (pooled @ W[c:])[pillar]`` (the same sum, the pillar half once per pillar)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], source: str = "") -> None:
        count = sum(1 for k in arrays if k.startswith("weight_"))
        if count == 0 or any(f"weight_{i}" not in arrays or f"bias_{i}" not in arrays for i in range(count)):
            raise ConfigError(f"dynamic pillar encoder weights {source or ''} need weight_0.., bias_0.., got "
                              f"{sorted(arrays)}")
        self.layers = [(np.ascontiguousarray(arrays[f"weight_{i}"], np.float32),
                        np.ascontiguousarray(arrays[f"bias_{i}"], np.float32)) for i in range(count)]
        self.info = BackendInfo("numpy", "cpu", "fp32", ("point_features", "pillar_index", "pillar_starts"),
                                ("pillar_features",), f"numpy dynamic pillar VFE ({count} layers)")

    @classmethod
    def from_file(cls, path) -> DynamicPillarEncoder:
        try:
            with np.load(path) as data:
                return cls({k: data[k] for k in data.files}, str(path))
        except OSError as exc:
            raise ConfigError(f"cannot read the dynamic pillar encoder weights {path}: {exc}") from None

    @property
    def num_output_features(self) -> int:
        return int(self.layers[-1][0].shape[1])

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(feeds["point_features"], np.float32)
        index, starts = np.asarray(feeds["pillar_index"]), np.asarray(feeds["pillar_starts"])
        pooled: np.ndarray | None = None
        for weight, bias in self.layers:
            if pooled is None:
                y = x @ weight
            else:
                half = x.shape[1]
                y = x @ weight[:half]
                y += (pooled @ weight[half:])[index]
            y += bias
            np.maximum(y, 0, out=y)
            pooled = segment_max(y, starts)
            x = y
        assert pooled is not None
        return {"pillar_features": pooled}


# ----------------------------------------------------------------------------------------------------- the pipeline


class DynamicPillarDetector(PillarDetector):
    """A dynamic-pillar CenterPoint (``DynamicPillarsConfig``) on ``backends``: ``encoder`` a
    ``DynamicPillarEncoder``, ``backbone_head`` the dense graph. Points are read with ``num_point_features``
    columns (5: x, y, z, intensity times ``intensity_scale``, time lag; a structured cloud or an ``(N, 4)`` array has
    lag 0). Results as ``PillarDetector``'s, boxes ``(N, 9)`` (x, y, z, dx, dy, dz, yaw, vx, vy); ``num_pillars`` and
    ``num_occupied`` are equal (no pillar limit). Not painted."""

    def __init__(self, config: DynamicPillarsConfig, backends: PillarBackends, *, intensity_scale: float = 1.0,
                 score_thresholds: float | Sequence[float] | None = None) -> None:
        super().__init__(config, backends, intensity_scale=intensity_scale,  # type: ignore[arg-type]
                         score_thresholds=score_thresholds)

    def _expected_inputs(self) -> dict[str, tuple]:
        c = self.config
        return {"spatial_features": (1, c.num_bev_features, *self.grid.bev_shape)}

    def _to_canvas(self, points, scores, laps: _Laps) -> _Frame:
        c = self.config
        features = point_features(points, self.intensity_scale, num_features=c.num_point_features)
        cells, inside = grid_cells(features, self.grid)
        cropped = features[inside]
        laps.lap("crop")
        pillars = group_pillars(cropped, cells[inside], self.grid)
        laps.lap("pillarize")
        if len(pillars):
            decorated = decorate_grouped(pillars, self.grid, c.vfe.use_absolute_xyz, c.vfe.with_distance)
            laps.lap("decorate")
            embedded = self.encoder.run({"point_features": decorated, "pillar_index": pillars.pillar_index,
                                         "pillar_starts": pillars.starts})["pillar_features"]
        else:
            decorated = np.zeros((0, c.num_input_features), np.float32)
            embedded = np.zeros((0, c.num_bev_features), np.float32)
        laps.lap("encoder")
        canvas = scatter_to_bev(embedded, pillars.coords, self.grid.bev_shape)
        laps.lap("scatter")
        return _Frame(len(features), len(cropped), pillars, len(pillars), decorated, canvas)  # type: ignore[arg-type]
