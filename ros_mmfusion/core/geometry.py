"""Rigid transforms and the pinhole camera model (ROS conventions).

Frames follow REP-103: ``base_link`` x forward, y left, z up; camera optical frames (``*_optical_frame``) x right,
y down, z forward. All lengths are metres, angles radians. A transform ``T_a_b`` maps points expressed in frame ``b``
into frame ``a`` (``p_a = T_a_b @ p_b``), as ``tf2`` would look up ``a <- b``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError

#: Rotation taking body-frame axes (x fwd, y left, z up) to optical axes (x right, y down, z fwd): p_opt = R @ p_body.
R_OPTICAL_FROM_BODY = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def quaternion_to_matrix(q_xyzw: np.ndarray | tuple[float, float, float, float]) -> np.ndarray:
    """3x3 rotation matrix from a quaternion (x, y, z, w) as in geometry_msgs; normalised first."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w), w >= 0, from a 3x3 rotation matrix (Shepperd's method)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    out = np.asarray(q)
    return out if out[3] >= 0 else -out


def yaw_to_quaternion(yaw: float | np.ndarray) -> np.ndarray:
    """Quaternion ``(..., 4)`` as ``(x, y, z, w)`` of a rotation by ``yaw`` radians about +z (scalar or array)."""
    half = 0.5 * np.asarray(yaw, dtype=np.float64)
    zeros = np.zeros_like(half)
    return np.stack([zeros, zeros, np.sin(half), np.cos(half)], axis=-1)


def quaternion_to_yaw(quaternion: np.ndarray | Sequence[float]) -> np.ndarray | float:
    """Yaw in radians, in (-pi, pi], of ``(..., 4)`` ``(x, y, z, w)`` quaternions (roll and pitch are ignored)."""
    q = np.asarray(quaternion, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise MessageFormatError(f"a quaternion array must be (..., 4) as (x, y, z, w), got {q.shape}")
    x, y, z, w = np.moveaxis(q, -1, 0)
    yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return float(yaw) if yaw.ndim == 0 else yaw


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll), the ROS fixed-axis roll-pitch-yaw convention."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


@dataclass(frozen=True)
class Transform:
    """Rigid transform ``T_parent_child``: ``rotation`` 3x3 and ``translation`` (3,) in metres."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> Transform:
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (4, 4):
            raise ConfigError(f"transform matrix must be 4x4, got shape {m.shape}")
        return cls(m[:3, :3].copy(), m[:3, 3].copy())

    @classmethod
    def from_xyz_quat(cls, xyz, q_xyzw) -> Transform:
        return cls(quaternion_to_matrix(q_xyzw), np.asarray(xyz, dtype=np.float64))

    @classmethod
    def from_xyz_rpy(cls, xyz, rpy) -> Transform:
        return cls(rpy_to_matrix(*rpy), np.asarray(xyz, dtype=np.float64))

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m

    def quaternion(self) -> np.ndarray:
        return matrix_to_quaternion(self.rotation)

    def inverse(self) -> Transform:
        rt = self.rotation.T
        return Transform(rt, -rt @ self.translation)

    def __matmul__(self, other: Transform) -> Transform:
        return Transform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 3) points from the child into the parent frame; float dtype of the input is kept."""
        pts = np.asarray(points)
        dtype = pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64
        return (pts @ self.rotation.T.astype(dtype) + self.translation.astype(dtype)).astype(dtype, copy=False)

    def apply_planar(self, xy: np.ndarray) -> np.ndarray:
        """Transform (N, 2) ground-plane points (z = 0 in the child frame) into the parent frame; their x, y there
        (a tilt between the frames is dropped: the robot drives on the ground plane)."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return self.apply(np.column_stack([pts, np.zeros(len(pts))]))[:, :2]


@dataclass(frozen=True)
class PinholeCamera:
    """A calibrated camera in the ``sensor_msgs/CameraInfo`` sense (optical frame, pixels).

    ``k`` is the 3x3 intrinsic matrix, ``d`` the distortion coefficients of ``distortion_model``
    ("plumb_bob"/"rational_polynomial": k1 k2 p1 p2 k3 [k4 k5 k6]; "equidistant": k1..k4), ``width``/``height`` pixels.
    """

    k: np.ndarray
    width: int
    height: int
    d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        k = np.asarray(self.k, dtype=np.float64).reshape(3, 3)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "d", np.asarray(self.d, dtype=np.float64).ravel())
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ConfigError(f"camera focal lengths must be positive, got fx={k[0, 0]} fy={k[1, 1]}")
        if self.width <= 0 or self.height <= 0:
            raise ConfigError(f"camera size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_rad: float) -> PinholeCamera:
        """An undistorted camera with square pixels and the principal point at the image centre."""
        fx = (width / 2.0) / np.tan(hfov_rad / 2.0)
        k = np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fx, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
        return cls(k=k, width=width, height=height)

    @property
    def is_distorted(self) -> bool:
        return bool(np.any(self.d != 0.0))

    def scaled(self, width: int, height: int) -> PinholeCamera:
        """The same camera resampled to ``width`` x ``height`` pixels (pixel-centre convention)."""
        sx, sy = width / self.width, height / self.height
        k = self.k.copy()
        k[0, 0] *= sx
        k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
        k[1, 1] *= sy
        k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
        return PinholeCamera(k=k, width=width, height=height, d=self.d, distortion_model=self.distortion_model)

    def _distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.zeros(8)
        d[: min(8, self.d.size)] = self.d[:8]
        if self.distortion_model == "equidistant":
            r = np.sqrt(x * x + y * y)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + d[0] * t2 + d[1] * t2**2 + d[2] * t2**3 + d[3] * t2**4)
            scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
            return x * scale, y * scale
        if self.distortion_model not in ("plumb_bob", "rational_polynomial"):
            raise ConfigError(f"unsupported distortion model {self.distortion_model!r}")
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        r2 = x * x + y * y
        radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return xd, yd

    def project(self, points_optical: np.ndarray, min_depth: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project (N, 3) points given in the camera optical frame.

        Returns ``uv`` (N, 2) float pixel coordinates (u right, v down; pixel centres at integers), ``depth`` (N,) the
        optical-axis z in metres, and ``valid`` (N,) bool: in front of the camera (z > ``min_depth``), finite, and
        inside the image (rounded pixel within ``[0, width) x [0, height)``).
        """
        pts = np.asarray(points_optical, dtype=np.float64).reshape(-1, 3)
        z = pts[:, 2]
        front = np.isfinite(pts).all(axis=1) & (z > min_depth)
        safe_z = np.where(front, z, 1.0)
        x, y = pts[:, 0] / safe_z, pts[:, 1] / safe_z
        if self.is_distorted:
            x, y = self._distort(x, y)
        u = self.k[0, 0] * x + self.k[0, 1] * y + self.k[0, 2]
        v = self.k[1, 1] * y + self.k[1, 2]
        ui, vi = np.rint(u), np.rint(v)
        valid = front & (ui >= 0) & (ui < self.width) & (vi >= 0) & (vi < self.height)
        return np.stack([u, v], axis=1), z, valid

    def pixel_rays(self) -> np.ndarray:
        """Unit-depth rays (H, W, 3) through every pixel centre of an undistorted camera, optical frame (z = 1)."""
        if self.is_distorted:
            raise ConfigError("pixel_rays is defined for undistorted cameras only")
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        x = (u - self.k[0, 2] - self.k[0, 1] * (v - self.k[1, 2]) / self.k[1, 1]) / self.k[0, 0]
        y = (v - self.k[1, 2]) / self.k[1, 1]
        return np.stack([x, y, np.ones_like(x)], axis=-1)


def rasterize_depth(camera: PinholeCamera, points_optical: np.ndarray) -> np.ndarray:
    """Sparse depth image (H, W) float32 metres from points in the optical frame; 0 where no point lands.

    Where several points land on one pixel the nearest wins (z-buffer), as a depth sensor would see it.
    """
    uv, depth, valid = camera.project(points_optical)
    out = np.zeros((camera.height, camera.width), dtype=np.float32)
    if not np.any(valid):
        return out
    u = np.rint(uv[valid, 0]).astype(np.int64)
    v = np.rint(uv[valid, 1]).astype(np.int64)
    z = depth[valid].astype(np.float32)
    order = np.argsort(-z)  # far first, so the nearest point is written last and wins
    out[v[order], u[order]] = z[order]
    return out
