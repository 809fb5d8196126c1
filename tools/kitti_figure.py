"""The docs figure of a KITTI frame through the suite: ``docs/img/kitti_projection.png``.

Reads a bag written by ``mmfusion import kitti`` (nothing from the dataset folder itself): the camera image, the
LiDAR cloud projected with the bag's /tf_static and CameraInfo (``core/geometry.py``), coloured by depth, the
ground-truth 3D boxes (converted to the LiDAR frame by the importer) projected back as wireframes and the labelled
2D boxes dashed. Usage::

    mmfusion import kitti ../shared/real/kitti_object --out /tmp/kitti_bag
    python tools/kitti_figure.py /tmp/kitti_bag --frame 2 --out docs/img/kitti_projection.png

The image is KITTI's (CC BY-NC-SA 3.0, Geiger et al.); say so beside the figure.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def render(bag: Path, frame_index: int, out: Path, scale: float = 1.0, colours: int = 128) -> Path:
    """Draw frame ``frame_index`` of ``bag`` and write it to ``out`` (palette PNG, ``colours`` colours)."""
    import cv2
    from PIL import Image
    from rosbags.rosbag2 import Reader

    from ros_mmfusion.core.bagio import typestore
    from ros_mmfusion.core.codec.boxes import BOX_EDGES, box_corners
    from ros_mmfusion.core.codec.image import decode_image
    from ros_mmfusion.core.codec.pointcloud import decode_cloud, xyz_array
    from ros_mmfusion.core.datasets.kitti import CAMERA_FRAME, LIDAR_FRAME
    from ros_mmfusion.core.geometry import PinholeCamera, Transform, quaternion_to_yaw

    store = typestore()
    frames: dict[int, dict] = {}
    tf: dict[str, Transform] = {}
    with Reader(bag) as reader:
        for conn, stamp, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == "/tf_static":
                tf = {t.child_frame_id: Transform.from_xyz_quat(
                    [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z],
                    [t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w])
                    for t in msg.transforms}
            elif conn.topic != "/ground_truth/label_info":
                frames.setdefault(stamp, {"tf": dict(tf)})[conn.topic] = msg
    frame = frames[sorted(frames)[frame_index]]
    img_msg, info = frame["/camera/color/image_raw"], frame["/camera/color/camera_info"]
    rgb = np.array(decode_image(img_msg.height, img_msg.width, img_msg.encoding, img_msg.is_bigendian, img_msg.step,
                                img_msg.data))
    camera = PinholeCamera(k=np.asarray(info.k).reshape(3, 3), width=info.width, height=info.height)
    camera_from_lidar = frame["tf"][CAMERA_FRAME].inverse() @ frame["tf"][LIDAR_FRAME]
    c = frame["/lidar/points"]
    xyz = xyz_array(np.asarray(decode_cloud(c.height, c.width, c.fields, c.is_bigendian, c.point_step, c.row_step,
                                            c.data)))
    uv, depth, valid = camera.project(camera_from_lidar.apply(xyz))
    canvas = (rgb * 0.8).astype(np.uint8)
    order = np.argsort(-depth[valid])  # far first, near on top
    colour = cv2.applyColorMap(np.clip(255 - depth[valid][order] * 255 / 50.0, 0, 255).astype(np.uint8)[:, None],
                               cv2.COLORMAP_TURBO)[:, 0, ::-1]
    u, v = np.rint(uv[valid][order]).astype(int).T
    for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2 x 2 pixels a return
        canvas[np.minimum(v + dv, camera.height - 1), np.minimum(u + du, camera.width - 1)] = colour
    boxes = frame.get("/ground_truth/boxes")
    two_d = {d.id: d for d in frame["/ground_truth/boxes_2d"].detections} if boxes is not None else {}
    for d in two_d.values():
        b = d.bbox
        p0 = (int(b.center.position.x - b.size_x / 2), int(b.center.position.y - b.size_y / 2))
        p1 = (int(b.center.position.x + b.size_x / 2), int(b.center.position.y + b.size_y / 2))
        grey = d.results[0].hypothesis.class_id == "dontcare"
        cv2.rectangle(canvas, p0, p1, (160, 160, 160) if grey else (255, 255, 255), 1, cv2.LINE_AA)
    for d in (boxes.detections if boxes is not None else []):
        p, q, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
        corners = box_corners(np.array([[p.x, p.y, p.z]]), np.array([[s.x, s.y, s.z]]),
                              np.array([quaternion_to_yaw([q.x, q.y, q.z, q.w])]))[0]
        pix, z, _ = camera.project(camera_from_lidar.apply(corners))
        if (z <= 0.5).any():
            continue
        for a, b in BOX_EDGES:
            cv2.line(canvas, tuple(np.rint(pix[a]).astype(int)), tuple(np.rint(pix[b]).astype(int)), (255, 0, 255), 2,
                     cv2.LINE_AA)
        top = np.rint(pix[:, :].min(axis=0)).astype(int)
        cv2.putText(canvas, d.results[0].hypothesis.class_id, (int(top[0]), max(int(top[1]) - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 0, 255), 2, cv2.LINE_AA)
    size = (round(canvas.shape[1] * scale), round(canvas.shape[0] * scale))
    small = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).quantize(colours, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path, help="a bag written by mmfusion import kitti")
    parser.add_argument("--frame", type=int, default=2, help="frame index in the bag (default 2)")
    parser.add_argument("--out", type=Path, default=Path("docs/img/kitti_projection.png"))
    args = parser.parse_args()
    path = render(args.bag, args.frame, args.out)
    print(f"{path}: {path.stat().st_size / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
