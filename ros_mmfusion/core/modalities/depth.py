"""Depth images as X-modality inputs: metric decoding, the replicated 8-bit depth encoding, and HHA.

Depth follows REP-118: ``32FC1`` is metres along the camera's optical axis (z, not the ray length) with NaN, +-inf
or 0 for "no return"; ``16UC1`` is millimetres with 0 for "no return". :func:`depth_metres` turns either into float32
metres with **0 as the only "no data" value**, and every encoding here keeps 0 = "no data", so no NaN reaches a model.

HHA (Gupta, Girshick, Arbelaez, Malik, ECCV 2014) re-expresses a depth image as three geocentric channels, each
scaled to 0..255 by :func:`encode_hha`:

- **H**\\ orizontal disparity: inverse depth, as a stereo pair with horizontal baseline ``b`` and focal length ``f``
  would measure it (``b * f / z``); here ``255 * min_depth / z``, i.e. ``b * f`` chosen so that ``min_depth`` metres
  (and anything nearer) gives 255. Far pixels tend to 0.
- **H**\\ eight above the ground: ``camera_height + p . up`` when the camera's height above the floor is known,
  else measured from the lowest floor estimate (a low percentile of ``p . up`` over the image). ``0..max_height``
  metres -> ``0..255``; below the floor clips to 0, above ``max_height`` to 255.
- **A**\\ ngle between the local surface normal (a plane fitted to the back-projected points in a small window,
  oriented towards the camera) and the *up* direction (against gravity): floor 0 deg, walls 90 deg, ceiling 180 deg;
  ``0..180`` deg -> ``0..255``.

Gravity comes from the camera-from-body rotation when given (body frame REP-103: z up, assumed level), else the optical
y axis is taken to point down (a level camera). Optionally it is refined from the normals themselves, as the paper
does: the direction most parallel to near-vertical normals and most perpendicular to near-horizontal ones.

All geometry is in the camera optical frame (x right, y down, z forward), metres; angles in the API are degrees only
where the docstring says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera, Transform

#: Order of the three HHA channels in the output: disparity (d), height (h), angle (a).
HHA_CHANNEL_ORDERS = ("dha", "ahd")
_CHUNK = 16384


def as_image_plane(raw: object, what: str) -> np.ndarray:
    """``raw`` as an ``(H, W)`` array (an ``(H, W, 1)`` one is squeezed); MessageFormatError otherwise."""
    if not isinstance(raw, np.ndarray):
        raise MessageFormatError(f"{what}: expected a numpy array, got {type(raw).__name__}")
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] == 0:
        raise MessageFormatError(f"{what}: expected a one-channel (H, W) or (H, W, 1) image, got shape {raw.shape}")
    return raw


def depth_metres(raw: np.ndarray, encoding: str) -> np.ndarray:
    """``(H, W)`` float32 depth in metres from a ``32FC1`` (metres) or ``16UC1`` (millimetres) image; 0 = no data.

    ``raw`` is ``(H, W)`` or ``(H, W, 1)``: float32/float64 for ``32FC1``, uint16 for ``16UC1``. NaN, +-inf and values
    <= 0 become 0. ``16UC1`` is converted exactly (``mm / 1000`` rounded once to float32), so a ``32FC1`` image made as
    ``(mm / 1000.0).astype(np.float32)`` decodes to the same array. MessageFormatError for any other encoding, dtype
    or shape.
    """
    plane = as_image_plane(raw, f"depth image ({encoding})")
    if encoding == "32FC1":
        if not np.issubdtype(plane.dtype, np.floating):
            raise MessageFormatError(f"depth image: encoding 32FC1 (metres) needs a float array, got {plane.dtype}")
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(plane) & (plane > 0)
        return np.where(valid, plane, 0.0).astype(np.float32)
    if encoding == "16UC1":
        if plane.dtype != np.uint16:
            raise MessageFormatError(f"depth image: encoding 16UC1 (millimetres) needs a uint16 array, "
                                     f"got {plane.dtype}")
        return (plane / 1000.0).astype(np.float32)
    raise MessageFormatError(f"depth image: encoding {encoding!r} is not a depth encoding; expected 32FC1 (metres) "
                             "or 16UC1 (millimetres)")


def encode_depth(depth_m: np.ndarray, max_depth: float, near_bright: bool = False) -> np.ndarray:
    """``(H, W)`` uint8 8-bit depth: ``0`` = no data, valid depths ``1..255`` linear over ``0..max_depth`` metres.

    ``near_bright=False`` (default): value ``round(255 * z / max_depth)`` - far is bright, like a depth image saved with
    its values proportional to depth. ``near_bright=True``: ``round(255 * (1 - z / max_depth))``. Either way a valid
    pixel is at least 1 (so it never reads as "no data") and depths beyond ``max_depth`` saturate. Non-finite or
    non-positive depths are "no data".
    """
    if not max_depth > 0:
        raise ConfigError(f"max_depth must be positive (metres), got {max_depth}")
    z = np.asarray(depth_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > 0)
    scaled = np.where(valid, z, 0.0) * (255.0 / max_depth)
    if near_bright:
        scaled = 255.0 - scaled
    return np.where(valid, np.clip(np.rint(scaled), 1, 255), 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------- geometry


_RAY_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def camera_rays(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` float32 ``(H, W)`` optical-frame ray slopes (the ray through a pixel is ``(x, y, 1)``).

    Distortion in the CameraInfo is undone (the depth image is assumed to be in the raw camera's pixels); results are
    cached per calibration.
    """
    key = (camera.width, camera.height, camera.distortion_model, camera.k.tobytes(), camera.d.tobytes())
    cached = _RAY_CACHE.get(key)
    if cached is not None:
        return cached
    if not camera.is_distorted:
        rays = camera.pixel_rays()
        x, y = rays[..., 0], rays[..., 1]
    else:
        v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float64)
        pixels = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :]
        if camera.distortion_model == "equidistant":
            normalised = cv2.fisheye.undistortPoints(pixels, camera.k, camera.d[:4])
        elif camera.distortion_model in ("plumb_bob", "rational_polynomial"):
            normalised = cv2.undistortPoints(pixels, camera.k, camera.d[:8])
        else:
            raise ConfigError(f"unsupported distortion model {camera.distortion_model!r}")
        x = normalised[:, 0, 0].reshape(camera.height, camera.width)
        y = normalised[:, 0, 1].reshape(camera.height, camera.width)
    out = (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32))
    if len(_RAY_CACHE) >= 8:
        _RAY_CACHE.clear()
    _RAY_CACHE[key] = out
    return out


def back_project(depth_m: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """``(H, W, 3)`` float32 points in the optical frame (metres) from z-depth; pixels with depth 0 give (0, 0, 0)."""
    x, y = camera_rays(camera)
    return np.stack([x * depth_m, y * depth_m, depth_m], axis=-1).astype(np.float32, copy=False)


def gravity_up(camera_from_body: Transform | np.ndarray | None = None) -> np.ndarray:
    """Unit *up* vector (against gravity) in the camera optical frame.

    ``camera_from_body`` maps body-frame vectors into the optical frame (``p_opt = R @ p_body``; a Transform, a 3x3
    rotation or a 4x4 matrix); the body's +z (REP-103) is taken as up. ``None``: a level camera, up = optical ``-y``.
    """
    if camera_from_body is None:
        return np.array([0.0, -1.0, 0.0])
    rotation = camera_from_body.rotation if isinstance(camera_from_body, Transform) else np.asarray(camera_from_body)
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape == (4, 4):
        rotation = rotation[:3, :3]
    if rotation.shape != (3, 3) or not np.all(np.isfinite(rotation)):
        raise ConfigError(f"camera_from_body must be a Transform, a 3x3 rotation or a 4x4 matrix, got {rotation.shape}")
    up = rotation @ np.array([0.0, 0.0, 1.0])
    norm = np.linalg.norm(up)
    if not 0.5 < norm < 2.0:
        raise ConfigError(f"camera_from_body is not a rotation (|R @ z| = {norm:.3g})")
    return up / norm


def _smallest_eigenvector(cxx, cxy, cxz, cyy, cyz, czz) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel unit eigenvector ``(nx, ny, nz)`` of the smallest eigenvalue of symmetric 3x3 matrices, and an ok mask.

    Closed form: the smallest eigenvalue from the trigonometric solution of the characteristic cubic, then the
    eigenvector as the longest cross product of two rows of ``C - lambda_min * I`` (all rows are orthogonal to it).
    """
    q = (cxx + cyy + czz) / 3.0
    axx, ayy, azz = cxx - q, cyy - q, czz - q
    p = np.sqrt((axx * axx + ayy * ayy + azz * azz + 2.0 * (cxy * cxy + cxz * cxz + cyz * cyz)) / 6.0)
    inv_p = 1.0 / np.where(p > 0, p, 1.0)
    det = axx * (ayy * azz - cyz * cyz) - cxy * (cxy * azz - cyz * cxz) + cxz * (cxy * cyz - ayy * cxz)
    phi = np.arccos(np.clip(0.5 * det * inv_p * inv_p * inv_p, -1.0, 1.0)) / 3.0
    lam = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    dxx, dyy, dzz = cxx - lam, cyy - lam, czz - lam
    # Rows r0 = (dxx, cxy, cxz), r1 = (cxy, dyy, cyz), r2 = (cxz, cyz, dzz); candidates r0 x r1, r0 x r2, r1 x r2.
    candidates = (
        (cxy * cyz - cxz * dyy, cxz * cxy - dxx * cyz, dxx * dyy - cxy * cxy),
        (cxy * dzz - cxz * cyz, cxz * cxz - dxx * dzz, dxx * cyz - cxy * cxz),
        (dyy * dzz - cyz * cyz, cyz * cxz - cxy * dzz, cxy * cyz - dyy * cxz),
    )
    nx, ny, nz = candidates[0]
    best = nx * nx + ny * ny + nz * nz
    for cx, cy, cz in candidates[1:]:
        norm = cx * cx + cy * cy + cz * cz
        better = norm > best
        nx, ny, nz = np.where(better, cx, nx), np.where(better, cy, ny), np.where(better, cz, nz)
        best = np.maximum(norm, best)
    length = np.sqrt(best)
    # A plane-like window has two clearly non-zero eigenvalues; line-like or empty windows are rejected.
    ok = (p > 0) & (length > 1e-6 * q * q)  # q > 0 for any non-empty window
    inv_len = 1.0 / np.where(ok, length, 1.0)
    return nx * inv_len, ny * inv_len, nz * inv_len, ok


def surface_normals(points: np.ndarray, valid: np.ndarray, window: int = 5,
                    min_support: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Unit surface normals ``(H, W, 3)`` float32 (optical frame, pointing towards the camera) and an ok mask.

    Each pixel's normal is that of the total-least-squares plane through the valid points of its ``window`` x
    ``window`` neighbourhood (the smallest principal axis of their covariance). ``ok`` is False where the pixel itself
    is invalid, fewer than ``min_support`` neighbours are valid, or the neighbourhood is degenerate (a line).
    Windows straddling a depth discontinuity blend both surfaces, as any fixed-window fit does.
    """
    if window < 3 or window % 2 == 0:
        raise ConfigError(f"normal window must be an odd number >= 3, got {window}")
    half = window // 2
    height, width = valid.shape
    normals = np.zeros((height, width, 3), np.float32)
    ok = np.zeros((height, width), bool)
    rows = max(1, _CHUNK // width)
    # Bands of rows (plus the window's margin) keep the many temporaries cache-sized: this loop is most of the time
    # of an HHA encoding. Zero padding outside the image = no points there, so bands join seamlessly.
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        lo, hi = max(0, top - half), min(height, bottom + half)
        inner = slice(top - lo, bottom - lo)
        band_valid = valid[lo:hi]

        def window_sum(a: np.ndarray, inner: slice = inner) -> np.ndarray:
            return cv2.boxFilter(a, cv2.CV_64F, (window, window), normalize=False,
                                 borderType=cv2.BORDER_CONSTANT)[inner]

        # Moments in float64: the covariance is a small difference of large second moments for distant surfaces.
        x, y, z = (np.where(band_valid, points[lo:hi, :, i].astype(np.float64), 0.0) for i in range(3))
        count = window_sum(band_valid.astype(np.float64))
        sx, sy, sz, sxx, sxy, sxz, syy, syz, szz = (
            window_sum(a) for a in (x, y, z, x * x, x * y, x * z, y * y, y * z, z * z))
        inv = 1.0 / np.maximum(count, 1.0)
        mx, my, mz = sx * inv, sy * inv, sz * inv
        cov = [sxx * inv - mx * mx, sxy * inv - mx * my, sxz * inv - mx * mz,
               syy * inv - my * my, syz * inv - my * mz, szz * inv - mz * mz]
        # Scaled to unit trace (the eigenvectors do not change), the eigen-solve is accurate enough in float32.
        trace = cov[0] + cov[3] + cov[5]
        scale = 1.0 / np.where(trace > 0, trace, 1.0)
        nx, ny, nz, fitted = _smallest_eigenvector(*((c * scale).astype(np.float32) for c in cov))
        good = fitted & (count >= min_support) & band_valid[inner]
        sign = np.where(nx * mx + ny * my + nz * mz > 0, -1.0, 1.0) * good
        band = normals[top:bottom]
        band[..., 0], band[..., 1], band[..., 2] = nx * sign, ny * sign, nz * sign
        ok[top:bottom] = good
    return normals, ok


def refine_gravity(normals: np.ndarray, ok: np.ndarray, up: np.ndarray,
                   thresholds_deg: tuple[float, ...] = (45.0, 15.0), stride: int = 4) -> np.ndarray:
    """Up vector refined from surface normals, starting from ``up`` (both unit, optical frame).

    For each threshold ``t``: normals within ``t`` deg of vertical (floor, tables, ceiling) should be parallel to up
    and normals within ``t`` deg of horizontal (walls) perpendicular to it; the new up minimises
    ``sum_perp (n . g)^2 - sum_par (n . g)^2`` over unit ``g`` (smallest eigenvector of a 3x3 matrix). A step is kept
    only when enough normals support it and it moves less than the first threshold from the prior; else ``up`` stays.
    """
    prior = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    samples = normals[::stride, ::stride][ok[::stride, ::stride]].astype(np.float64)
    g = prior
    if samples.shape[0] < 20:
        return g
    for threshold in thresholds_deg:
        cosine = np.abs(samples @ g)
        parallel = samples[cosine > np.cos(np.radians(threshold))]
        perpendicular = samples[cosine < np.sin(np.radians(threshold))]
        if parallel.shape[0] < 10:
            break
        cost = perpendicular.T @ perpendicular - parallel.T @ parallel
        _, vectors = np.linalg.eigh(cost)
        candidate = vectors[:, 0] * (1.0 if vectors[:, 0] @ g >= 0 else -1.0)
        if np.degrees(np.arccos(np.clip(candidate @ prior, -1.0, 1.0))) > thresholds_deg[0]:
            break
        g = candidate
    return g / np.linalg.norm(g)


@dataclass(frozen=True)
class HHAChannels:
    """Metric HHA channels of a depth image, all ``(H, W)`` float32 and 0 where ``valid`` is False.

    ``inverse_depth`` 1/m (the disparity of a unit ``baseline * focal``); ``height`` metres above the floor (negative
    below it); ``angle`` degrees between the surface normal and up (0 where ``normal_ok`` is False); ``up`` the unit
    up vector used (optical frame); ``floor`` the floor's ``p . up`` coordinate (metres, optical frame origin).
    """

    inverse_depth: np.ndarray
    height: np.ndarray
    angle: np.ndarray
    valid: np.ndarray
    normal_ok: np.ndarray
    up: np.ndarray
    floor: float


def hha_channels(depth_m: np.ndarray, camera: PinholeCamera, *, camera_height: float | None = None,
                 camera_from_body: Transform | np.ndarray | None = None, refine: bool = False,
                 floor_percentile: float = 1.0, normal_window: int = 5) -> HHAChannels:
    """Metric HHA of a float32 depth image (metres, 0 = no data) in ``camera``'s pixels.

    ``camera_height`` (metres above the floor, along up) fixes the floor; ``None`` takes the floor at the
    ``floor_percentile``-th percentile of the points' height. ``camera_from_body`` gives gravity (see
    :func:`gravity_up`); ``refine`` refines it from the normals (:func:`refine_gravity`).
    """
    if camera is None:
        raise ConfigError("HHA needs the camera intrinsics (CameraInfo)")
    depth = as_image_plane(depth_m, "depth image")
    if depth.shape != (camera.height, camera.width):
        raise MessageFormatError(f"depth image is {depth.shape[1]}x{depth.shape[0]} but the camera is "
                                 f"{camera.width}x{camera.height}; pass camera.scaled(width, height) for a resized "
                                 "image")
    depth = np.asarray(depth, dtype=np.float32)
    valid = depth > 0
    points = back_project(depth, camera)
    normals, normal_ok = surface_normals(points, valid, normal_window)
    up = gravity_up(camera_from_body)
    if refine:
        up = refine_gravity(normals, normal_ok, up)
    up32 = up.astype(np.float32)
    elevation = points[..., 0] * up32[0] + points[..., 1] * up32[1] + points[..., 2] * up32[2]
    if camera_height is not None:
        floor = -float(camera_height)
    elif np.any(valid):
        floor = float(np.percentile(elevation[valid], floor_percentile))
    else:
        floor = 0.0
    height = np.where(valid, elevation - np.float32(floor), 0.0).astype(np.float32)
    cosine = np.clip(normals @ up32, -1.0, 1.0)
    angle = np.where(normal_ok, np.degrees(np.arccos(cosine)), 0.0).astype(np.float32)
    inverse_depth = np.divide(1.0, depth, out=np.zeros_like(depth), where=valid)
    return HHAChannels(inverse_depth, height, angle, valid, normal_ok, up, floor)


def encode_hha(channels: HHAChannels, min_depth: float = 0.5, max_height: float = 3.0,
               order: str = "dha") -> np.ndarray:
    """``(H, W, 3)`` uint8 HHA from metric channels.

    Disparity ``255 * min_depth / z``, height ``255 * h / max_height``, angle ``255 * a / 180`` (``a`` in degrees).

    Each channel is clipped to 0..255 (nearer than ``min_depth`` metres, below the floor, above ``max_height`` metres
    saturate); invalid pixels are 0 in all three. ``order`` "dha" puts disparity in channel 0, "ahd" reverses the
    channels (what a network sees when an HHA file stored with disparity in red is read with OpenCV, B,G,R).
    """
    if not min_depth > 0 or not max_height > 0:
        raise ConfigError(f"HHA scales must be positive, got min_depth={min_depth} m, max_height={max_height} m")
    if order not in HHA_CHANNEL_ORDERS:
        raise ConfigError(f"HHA channel order {order!r}: expected one of {HHA_CHANNEL_ORDERS}")
    planes = (channels.inverse_depth * (255.0 * min_depth), channels.height * (255.0 / max_height),
              channels.angle * (255.0 / 180.0))
    out = cv2.merge([np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes])
    out[~channels.valid] = 0
    return out[..., ::-1].copy() if order == "ahd" else out


# ------------------------------------------------------------------------------------- HHA as Gupta et al. published it

#: HHA encodings: ``"gupta"`` the published one (the HHA images of NYU Depth V2 behind CMX's NYU checkpoints),
#: ``"legacy"`` this suite's earlier scales (kept for model packages trained on them).
HHA_SCHEMES = ("gupta", "legacy")
GUPTA_NORMAL_RADIUS = 3
"""Half-size of the square window (7 x 7) of the normals behind the angle channel (upstream ``patchSize(1)``)."""
GUPTA_GRAVITY_RADIUS = 10
"""Half-size of the window (21 x 21) of the smoother normals the gravity direction is estimated from."""
GUPTA_GRAVITY_THRESHOLDS_DEG = (45.0, 15.0)
GUPTA_GRAVITY_ITERATIONS = (5, 5)
GUPTA_MIN_FLOOR_DROP_CM = 90.0
"""When the lowest point is less than this far below the camera, the floor is taken as unseen ..."""
GUPTA_DEFAULT_CAMERA_HEIGHT_CM = 130.0
"""... and the camera as this high above it."""


def gupta_normals(depth_m: np.ndarray, camera: PinholeCamera, radius: int) -> np.ndarray:
    """``(H, W, 3)`` float64 unit normals (optical frame) as Gupta et al. fit them; NaN where undefined.

    The plane ``n . p = 1`` through the valid points of the ``(2 radius + 1)^2`` window around each pixel, fitted by
    least squares in inverse depth: with ``(x, y)`` a point's ray slopes and ``z`` its depth, minimise
    ``sum (n_x x + n_y y + n_z - 1 / z)^2`` (normal equations from window sums, zero outside the image). Pixels
    without depth get the normal of their window too. Undefined (NaN) where the window has fewer than 3 valid points
    or its system is singular (upstream returns an arbitrary direction there). Orientation as upstream: away from the
    camera (``n . p >= 0``; ``n_z >= 0`` for pixels without depth), so a floor below the camera has a normal along
    optical +y (down) for a level camera.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    valid = depth > 0
    x, y = (np.asarray(r, np.float64) for r in camera_rays(camera))
    inv_z = np.divide(1.0, depth, out=np.zeros_like(depth), where=valid)
    one = valid.astype(np.float64)
    xv, yv = x * one, y * one
    size = 2 * radius + 1

    def window_sum(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, cv2.CV_64F, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)

    a11, a12, a13, a22, a23, a33 = (window_sum(v) for v in (xv * xv, xv * yv, xv, yv * yv, yv, one))
    b1, b2, b3 = (window_sum(v) for v in (xv * inv_z, yv * inv_z, inv_z))
    # Adjugate of the symmetric normal matrix (its inverse up to the determinant, whose sign the orientation fixes).
    c11, c12, c13 = a22 * a33 - a23 * a23, a13 * a23 - a12 * a33, a12 * a23 - a13 * a22
    c22, c23, c33 = a11 * a33 - a13 * a13, a12 * a13 - a11 * a23, a11 * a22 - a12 * a12
    det = a11 * c11 + a12 * c12 + a13 * c13
    normals = np.stack([c11 * b1 + c12 * b2 + c13 * b3, c12 * b1 + c22 * b2 + c23 * b3,
                        c13 * b1 + c23 * b2 + c33 * b3], axis=-1)
    length = np.linalg.norm(normals, axis=-1)
    # Singular: fewer than 3 points, or (nearly) collinear rays: the centred 2x2 scatter of the rays is degenerate.
    count = np.maximum(a33, 1.0)
    sxx, syy, sxy = a11 - a13 * a13 / count, a22 - a23 * a23 / count, a12 - a13 * a23 / count
    defined = (a33 >= 3) & (sxx * syy - sxy * sxy > 1e-6 * sxx * syy) & (sxx * syy > 0) & (det != 0) & (length > 0)
    normals = normals / np.where(defined, length, 1.0)[..., None]
    sign = np.where(normals[..., 2] < 0, -1.0, 1.0)
    normals *= sign[..., None]
    facing = normals[..., 0] * x + normals[..., 1] * y + normals[..., 2]  # sign of n . p for depth > 0
    normals *= np.where(valid & (facing < 0), -1.0, 1.0)[..., None]
    normals[~defined] = np.nan
    return normals


def gupta_gravity(normals: np.ndarray, down: np.ndarray | None = None,
                  thresholds_deg: tuple[float, ...] = GUPTA_GRAVITY_THRESHOLDS_DEG,
                  iterations: tuple[int, ...] = GUPTA_GRAVITY_ITERATIONS) -> np.ndarray:
    """The unit gravity direction (pointing *down*, optical frame) estimated from surface normals (Gupta et al.).

    Starting from ``down`` (default optical +y, a level camera), for each threshold ``t`` and its number of
    iterations: normals within ``t`` degrees of the current direction (either sign: floors, table tops, ceilings)
    should be parallel to gravity and those within ``t`` of perpendicular (walls) perpendicular to it; the new
    direction is the eigenvector of the smallest eigenvalue of ``sum_perp n n^T - sum_par n n^T``, signed to agree
    with the previous one. NaN normals are ignored; an iteration with no normal in either set keeps the direction;
    where the smallest eigenvalue is not unique (one plane in view) the direction nearest the current one in its
    eigenspace is kept (upstream's ``eig`` returns an arbitrary one there).
    """
    g = np.array([0.0, 1.0, 0.0]) if down is None else np.asarray(down, np.float64) / np.linalg.norm(down)
    samples = normals.reshape(-1, 3)
    samples = samples[np.isfinite(samples).all(axis=1)]
    for threshold, count in zip(thresholds_deg, iterations, strict=True):
        for _ in range(count):
            cosine = np.abs(samples @ g)
            parallel = samples[cosine > np.cos(np.radians(threshold))]
            perpendicular = samples[cosine < np.sin(np.radians(threshold))]
            if parallel.shape[0] + perpendicular.shape[0] == 0:
                break
            values, vectors = np.linalg.eigh(perpendicular.T @ perpendicular - parallel.T @ parallel)
            if values[1] - values[0] <= 1e-9 * max(1.0, np.abs(values).max()):
                # Two smallest eigenvalues tie (e.g. one wall and no floor in view): any direction in their plane
                # fits; keep the one nearest the current estimate rather than an arbitrary one.
                plane = vectors[:, :2]
                candidate = plane @ (plane.T @ g)
                if np.linalg.norm(candidate) < 1e-9:
                    break
                candidate /= np.linalg.norm(candidate)
            else:
                candidate = vectors[:, 0]
            g = candidate * (-1.0 if candidate @ g < 0 else 1.0)
    return g / np.linalg.norm(g)


@dataclass(frozen=True)
class GuptaHHA:
    """Gupta et al.'s HHA of one depth image before quantisation: ``disparity`` ``31000 / max(z_cm, 100)``,
    ``height`` centimetres above the floor, ``angle`` degrees + 38 (``a + 128 - 90``, NaN normal -> ``a = 180``),
    all ``(H, W)`` float64; ``down`` the gravity direction used (optical frame), ``floor_cm`` the floor's height
    relative to the camera (negative: below it)."""

    disparity: np.ndarray
    height: np.ndarray
    angle: np.ndarray
    down: np.ndarray
    floor_cm: float


def gupta_hha_channels(depth_m: np.ndarray, camera: PinholeCamera, *, camera_height: float | None = None,
                       camera_from_body: Transform | np.ndarray | None = None, estimate_gravity: bool = True,
                       floor_percentile: float = 0.0) -> GuptaHHA:
    """The three HHA planes of a float depth image (metres, 0 = no data) exactly as Gupta et al. define them.

    Gravity: from ``camera_from_body`` (see :func:`gravity_up`) or a level camera, then, when ``estimate_gravity``,
    re-estimated from the 21 x 21-window normals (:func:`gupta_gravity`). Floor: ``camera_height`` metres below the
    camera when given; else the ``floor_percentile``-th percentile (0: the lowest point, as upstream) of the valid
    points' heights along up, and when that is less than 90 cm below the camera the floor is assumed 130 cm below
    it (upstream's rule). Pixels without depth are treated as upstream treats a zero depth: disparity 310 (saturates
    to 255), a height of the camera's own, the angle of the normal their window gives (or 180 deg).
    """
    depth = np.asarray(as_image_plane(depth_m, "depth image"), np.float64)
    if depth.shape != (camera.height, camera.width):
        raise MessageFormatError(f"depth image is {depth.shape[1]}x{depth.shape[0]} but the camera is "
                                 f"{camera.width}x{camera.height}; pass camera.scaled(width, height) for a resized "
                                 "image")
    valid = depth > 0
    z_cm = np.where(valid, depth, 0.0) * 100.0
    down = -gravity_up(camera_from_body)
    if estimate_gravity:
        down = gupta_gravity(gupta_normals(depth, camera, GUPTA_GRAVITY_RADIUS), down)
    x, y = (np.asarray(r, np.float64) for r in camera_rays(camera))
    elevation = -(x * down[0] + y * down[1] + down[2]) * z_cm  # cm along up, 0 at the camera
    if camera_height is not None:
        floor = -100.0 * float(camera_height)
    else:
        floor = float(np.percentile(elevation[valid], floor_percentile)) if valid.any() else 0.0
        if floor > -GUPTA_MIN_FLOOR_DROP_CM:
            floor = -GUPTA_DEFAULT_CAMERA_HEIGHT_CM
    normals = gupta_normals(depth, camera, GUPTA_NORMAL_RADIUS)
    cosine = np.clip(normals @ down, -1.0, 1.0)
    angle = np.where(np.isfinite(cosine), np.degrees(np.arccos(np.nan_to_num(cosine))), 180.0)
    return GuptaHHA(disparity=31000.0 / np.maximum(z_cm, 100.0), height=elevation - floor,
                    angle=angle + 128.0 - 90.0, down=down, floor_cm=floor)


def quantize_gupta(hha: GuptaHHA, order: str = "dha") -> np.ndarray:
    """``(H, W, 3)`` uint8: each plane rounded (half away from zero, as MATLAB's ``uint8``) and saturated to
    0..255; ``order`` "dha" puts disparity in channel 0 (red when viewed as RGB, as the published PNGs store it),
    "ahd" reverses the channels (what a network saw when those files were read with OpenCV, B,G,R)."""
    if order not in HHA_CHANNEL_ORDERS:
        raise ConfigError(f"HHA channel order {order!r}: expected one of {HHA_CHANNEL_ORDERS}")
    planes = [np.clip(np.floor(np.abs(p) + 0.5) * np.sign(p), 0, 255).astype(np.uint8)
              for p in (hha.disparity, hha.height, hha.angle)]
    out = cv2.merge(planes)
    return out[..., ::-1].copy() if order == "ahd" else out


__all__ = ["HHA_CHANNEL_ORDERS", "HHA_SCHEMES", "GuptaHHA", "HHAChannels", "gupta_gravity", "gupta_hha_channels",
           "gupta_normals", "quantize_gupta", "as_image_plane", "back_project", "camera_rays",
           "depth_metres", "encode_depth", "encode_hha", "gravity_up", "hha_channels", "refine_gravity",
           "surface_normals"]
