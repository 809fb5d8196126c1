"""The pipelines on real recordings (../shared/real): MFNet RGB-thermal frames through the thermal encoder and the
default RGB-thermal segmentation package, and the TUM image sequence through topological-map building and ViNT.

No accuracy is claimed: none of these samples has labels for the suite's synthetic classes, and the default models
were trained on the synthetic world.
"""
from __future__ import annotations

import numpy as np

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.datasets.rgbd import read_mfnet
from ros_mmfusion.core.modalities.encoders import make_encoder
from ros_mmfusion.core.segmentation.preprocess import encode_x
from test.fixtures import require_real


def test_mfnet_day_and_night_through_the_thermal_encoder_and_the_default_rgbt_model():
    from ros_mmfusion.core.segmentation.artifacts import build_backend, load_package
    from ros_mmfusion.core.segmentation.pipeline import FusionSegmenter

    spec = load_package()
    assert spec.x_modality == "thermal"
    encoder = make_encoder(spec.x_modality, spec.x_params)
    segmenter = FusionSegmenter(spec, build_backend(spec, "onnxruntime"))
    encoded = {}
    for name in ("01234N", "01477D"):  # night, day
        colour, thermal = read_mfnet(require_real("rgbt_mfnet", f"{name}.png"))
        x = encode_x(encoder, "thermal", thermal, colour.shape[:2], encoding="mono8")
        # MFNet's 8-bit thermal reaches the network as it is (the package's kelvin window is for radiometric input).
        np.testing.assert_array_equal(x[..., 0], thermal)
        encoded[name] = x[..., 0]
        result = segmenter(colour, x)
        assert result.labels.shape == colour.shape[:2] and result.labels.max() < spec.num_classes
        assert np.isfinite(result.confidence).all() and (result.confidence > 0).all()
    difference = np.abs(encoded["01234N"].astype(int) - encoded["01477D"].astype(int))
    assert difference.mean() > 10 and encoded["01234N"].std() > 5 and encoded["01477D"].std() > 5


def test_tum_sequence_to_a_topomap_and_vint_distances_to_the_last_frame(tmp_path, capsys):
    from rosbags.rosbag2 import Reader

    from ros_mmfusion.core.bagio import typestore
    from ros_mmfusion.core.model_package import resolve_package_dir
    from ros_mmfusion.core.navigation.artifacts import NavigationModel, build_backend
    from ros_mmfusion.core.navigation.pipeline import NavigationPolicy
    from ros_mmfusion.core.navigation.topomap import build_topomap, load_topomap

    bag = tmp_path / "tum"
    assert main(["import", "rgbd", str(require_real("tum_sequence")), "--out", str(bag)]) == 0
    build_topomap(bag, "/camera/color/image_raw", 1.0, tmp_path / "map")
    topomap = load_topomap(tmp_path / "map")
    assert len(topomap) == 17  # one node per frame at ~1 Hz
    model = NavigationModel.from_package(resolve_package_dir("models/vint_reduced_corridor"))
    policy = NavigationPolicy(topomap, build_backend("onnxruntime", model.variant, model.weights),
                              variant=model.variant, frame_rate_hz=1.0, waypoint_spacing=model.waypoint_spacing)
    store = typestore()
    to_goal = []
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages(
                connections=[c for c in reader.connections if c.topic == "/camera/color/image_raw"]):
            message = store.deserialize_cdr(raw, connection.msgtype)
            rgb = np.frombuffer(bytes(message.data), np.uint8).reshape(message.height, message.width, 3)
            assert policy.add_frame(message.header.stamp.sec * 10**9 + message.header.stamp.nanosec, rgb)
            if policy.ready:
                distances, waypoints = policy.predict(0, len(topomap) - 1)
                assert distances.shape == (17,) and np.isfinite(distances).all() and np.isfinite(waypoints).all()
                to_goal.append(float(distances[-1]))
                step = policy.step()
                assert 0 <= step.closest_node < 17
    assert len(to_goal) == 12  # contexts of 6 frames ending at frames 5..16
    # Reported, not asserted: the default package was trained on the synthetic corridor and shows no clear trend
    # here (measured 9.1, 12.6, 14.3, 9.6, 11.7, 9.9, 9.6, 10.8, 9.2, 9.5, 10.5, 8.5 for frames 5..16).
    with capsys.disabled():
        print(f"\nViNT temporal distance to the last TUM frame, contexts ending at frames 5..16: "
              f"{np.round(to_goal, 1).tolist()}")
