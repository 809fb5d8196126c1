"""Anchor boxes of an anchor-based 3D detection head (SECOND / PointPillars), laid out as OpenPCDet lays them out.

Each class contributes ``len(anchor_sizes) * len(anchor_rotations)`` anchors at every cell of the head's feature map.
Anchor centres span the point-cloud range: with ``align_center`` false the first and last centres sit on the range's
edges (stride ``range / (cells - 1)``); with it true they sit at cell centres (stride ``range / cells``, offset half a
stride). An anchor's z is its class's bottom height plus half its height. Per location the order is class, then size,
then rotation; the flat anchor index is ``n = (y * nx + x) * A + a``, which is how a ``(1, A*K, ny, nx)`` head map
flattens once permuted to NHWC.

A detector moved to another range (``pipeline.with_range``) keeps the anchors it was trained with: its
``lattice_range`` is the range the layout was made for, and the new range's anchors continue that lattice (same
stride, the same centre for the same cell), rather than a layout of the new extent, whose stride
``range / (cells - 1)`` would move every anchor by up to half a cell relative to the trained one.

Centres are evaluated in float64 and rounded to float32; PyTorch's float32 ``arange`` (the reference) can land one
float32 ulp away (a few micrometres).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import ConfigError


@dataclass(frozen=True)
class AnchorClassConfig:
    """One class's anchors, as an entry of OpenPCDet's ``ANCHOR_GENERATOR_CONFIG`` (metres, radians).

    ``anchor_sizes`` are ``(dx, dy, dz)``; ``anchor_bottom_heights`` the z of the anchors' bottom faces (one value).
    ``matched_threshold``/``unmatched_threshold`` only matter for training and are kept for round-tripping configs.
    """

    class_name: str
    anchor_sizes: tuple[tuple[float, float, float], ...]
    anchor_rotations: tuple[float, ...]
    anchor_bottom_heights: tuple[float, ...]
    align_center: bool = False
    feature_map_stride: int = 1
    matched_threshold: float = 0.6
    unmatched_threshold: float = 0.45

    def __post_init__(self) -> None:
        if not self.anchor_sizes or any(len(s) != 3 for s in self.anchor_sizes):
            raise ConfigError(f"anchor_sizes of {self.class_name!r} must be (dx, dy, dz) triples")
        if not self.anchor_rotations:
            raise ConfigError(f"anchor_rotations of {self.class_name!r} is empty")
        if len(self.anchor_bottom_heights) != 1:
            raise ConfigError(f"anchor_bottom_heights of {self.class_name!r} must hold exactly one height, "
                              f"got {self.anchor_bottom_heights!r}")

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.anchor_sizes) * len(self.anchor_rotations)

    @classmethod
    def from_openpcdet(cls, entry: Mapping) -> AnchorClassConfig:
        """From one ``ANCHOR_GENERATOR_CONFIG`` entry (lower-case keys as in OpenPCDet's YAML)."""
        try:
            return cls(
                class_name=str(entry["class_name"]),
                anchor_sizes=tuple(tuple(float(v) for v in s) for s in entry["anchor_sizes"]),
                anchor_rotations=tuple(float(r) for r in entry["anchor_rotations"]),
                anchor_bottom_heights=tuple(float(h) for h in entry["anchor_bottom_heights"]),
                align_center=bool(entry.get("align_center", False)),
                feature_map_stride=int(entry.get("feature_map_stride", 1)),
                matched_threshold=float(entry.get("matched_threshold", 0.6)),
                unmatched_threshold=float(entry.get("unmatched_threshold", 0.45)),
            )
        except KeyError as exc:
            raise ConfigError(f"anchor generator entry {dict(entry)!r} lacks {exc.args[0]!r}") from None


def anchors_per_location(configs: Sequence[AnchorClassConfig]) -> int:
    """``A``: anchors per feature-map cell over all classes."""
    return sum(c.num_anchors_per_location for c in configs)


def feature_map_size(config: AnchorClassConfig, grid_size: Sequence[int]) -> tuple[int, int]:
    """``(nx, ny)`` cells of the head's feature map: the voxel grid's ``(nx, ny)`` floor-divided by the stride."""
    return int(grid_size[0]) // config.feature_map_stride, int(grid_size[1]) // config.feature_map_stride


def _centres(lo: float, hi: float, cells: int, align_center: bool) -> np.ndarray:
    if align_center:
        stride = (hi - lo) / cells
        start = lo + stride / 2
    else:
        stride = (hi - lo) / (cells - 1)
        start = lo
    count = int(np.ceil((hi + 1e-5 - start) / stride))  # the reference's arange(start, hi + 1e-5, stride)
    return (start + np.arange(count) * stride).astype(np.float32)


def _lattice_centres(lo: float, hi: float, cells: int, lattice_lo: float, lattice_hi: float,
                     align_center: bool) -> np.ndarray:
    """``cells`` centres over ``lo..hi`` continuing the layout of ``lattice_lo..lattice_hi`` (same cell size)."""
    cell = (hi - lo) / cells
    lattice_cells = max(2, round((lattice_hi - lattice_lo) / cell))
    start = _centres(lattice_lo, lattice_hi, lattice_cells, align_center)[0]
    stride = (lattice_hi - lattice_lo) / (lattice_cells if align_center else lattice_cells - 1)
    return (start + ((lo - lattice_lo) / cell + np.arange(cells)) * stride).astype(np.float32)


def anchor_centres(config: AnchorClassConfig, point_cloud_range: Sequence[float], grid_size: Sequence[int],
                   lattice_range: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(x_centres (nx,), y_centres (ny,))`` of one class's anchors; with ``lattice_range`` (another
    range, same cell size) the centres continue that range's layout."""
    rng = np.asarray(point_cloud_range, dtype=np.float32).astype(np.float64)  # the reference keeps it as float32
    nx, ny = feature_map_size(config, grid_size)
    if lattice_range is None or tuple(lattice_range) == tuple(point_cloud_range):
        return (_centres(rng[0], rng[3], nx, config.align_center), _centres(rng[1], rng[4], ny, config.align_center))
    lat = np.asarray(lattice_range, dtype=np.float32).astype(np.float64)
    return (_lattice_centres(rng[0], rng[3], nx, lat[0], lat[3], config.align_center),
            _lattice_centres(rng[1], rng[4], ny, lat[1], lat[4], config.align_center))


def generate_anchors(configs: Sequence[AnchorClassConfig], point_cloud_range: Sequence[float],
                     grid_size: Sequence[int], lattice_range: Sequence[float] | None = None) -> np.ndarray:
    """float32 ``(ny, nx, A, 7)`` anchors ``(x, y, z, dx, dy, dz, yaw)``, classes in ``configs`` order.

    ``grid_size`` is the voxel grid ``(nx, ny, nz)``; all classes must share one feature-map size (a single head).
    ``anchors.reshape(-1, 7)[n]`` is anchor ``n = (y * nx + x) * A + a``. ``lattice_range``: the range the anchor
    layout was made for (None: ``point_cloud_range``; see the module docstring).
    """
    if not configs:
        raise ConfigError("no anchor classes configured")
    sizes = {feature_map_size(c, grid_size) for c in configs}
    if len(sizes) != 1:
        raise ConfigError(f"anchor classes use different feature map sizes {sorted(sizes)}; a single head needs one")
    per_class = []
    for config in configs:
        xs, ys = anchor_centres(config, point_cloud_range, grid_size, lattice_range)
        size = np.asarray(config.anchor_sizes, dtype=np.float32)  # (S, 3)
        rot = np.asarray(config.anchor_rotations, dtype=np.float32)  # (R,)
        ny, nx, s, r = ys.size, xs.size, size.shape[0], rot.size
        out = np.empty((ny, nx, s, r, 7), dtype=np.float32)
        out[..., 0] = xs[None, :, None, None]
        out[..., 1] = ys[:, None, None, None]
        out[..., 3:6] = size[None, None, :, None, :]
        out[..., 2] = np.float32(config.anchor_bottom_heights[0]) + out[..., 5] / 2
        out[..., 6] = rot[None, None, None, :]
        per_class.append(out.reshape(ny, nx, s * r, 7))
    return np.concatenate(per_class, axis=2)
