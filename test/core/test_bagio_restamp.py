"""The bag player's restamping of /tf (core/bagio.py restamp_tf)."""
from __future__ import annotations


def test_a_replayed_tf_message_moves_every_transform_stamp_like_the_headers():
    """The bag player restamps header stamps onto the wall clock; a TFMessage has no header, so without
    restamp_tf its stamps stayed in bag time and a lookup at a restamped cloud's stamp failed (the carla
    preset's boxes in ego_vehicle never came out)."""
    from ros_mmfusion.core.bagio import TF_MESSAGE, restamp_tf, typestore

    store = typestore()
    T = store.types

    def stamped(ns: int, child: str):
        stamp = T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
        header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="ego_vehicle")
        tf = T["geometry_msgs/msg/Transform"](translation=T["geometry_msgs/msg/Vector3"](x=1.0, y=0.0, z=1.9),
                                              rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
        return T["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child, transform=tf)

    message = T[TF_MESSAGE](transforms=[stamped(5 * 10**9 + 7, "a"), stamped(6 * 10**9, "b")])
    data = bytes(store.serialize_cdr(message, TF_MESSAGE))
    out = store.deserialize_cdr(restamp_tf(data, lambda s: 100 * 10**9 + (s - 5 * 10**9) // 2),
                                TF_MESSAGE)
    assert [(t.header.stamp.sec, t.header.stamp.nanosec, t.child_frame_id) for t in out.transforms] == \
        [(100, 3, "a"), (100, 500_000_000, "b")]
    assert out.transforms[0].transform.translation.z == 1.9
