"""rosbag2 access without ROS, through ``rosbags``: the typestore with our interface packages, raw message streams,
and header-stamp rewriting on serialized CDR (so a replay can be re-timed without deserializing images).
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError, one_line
from ros_mmfusion.core.stamps import NS_PER_S
from ros_mmfusion.core.tf_buffer import TF_MESSAGE_TYPE as TF_MESSAGE
from ros_mmfusion.paths import share_dir

HEADER_TYPE = "std_msgs/msg/Header"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
"""The camera image types a bag topic may carry (raw or compressed)."""
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
METADATA = "metadata.yaml"
"""The rosbag2 metadata file in a bag directory."""


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Jazzy typestore plus the interface packages the suite ships (vision_msgs, tf2_msgs)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for msg_file in sorted((share_dir() / "interfaces").glob("*/msg/*.msg")):
        name = f"{msg_file.parent.parent.name}/msg/{msg_file.stem}"
        types.update(get_types_from_msg(msg_file.read_text(), name))
    store.register(types)
    return store


@cache
def starts_with_header(msgtype: str) -> bool:
    """True when the message's first field is a ``std_msgs/Header`` (its stamp sits at CDR bytes 4..12)."""
    store = typestore()
    if msgtype not in store.fielddefs:
        return False
    fields = store.fielddefs[msgtype][1]
    return bool(fields) and fields[0][1][1] == HEADER_TYPE


def _endian(data: bytes | memoryview) -> str:
    if len(data) < 12:
        raise ConfigError(f"serialized message too short ({len(data)} bytes) to hold a header stamp")
    return "<" if data[1] & 1 else ">"


def read_header_stamp(data: bytes | memoryview) -> int:
    """Header stamp (ns) of a serialized message whose first field is a Header."""
    sec, nanosec = struct.unpack_from(_endian(data) + "iI", data, 4)
    return sec * NS_PER_S + nanosec


BAG_FILE_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".db3-journal")
"""What rosbag2's storage plugins write into a bag directory besides ``metadata.yaml``."""


def is_bag_written_by(path: str | Path, marker: str, generator: str | None, own_files: Sequence[str] = ()) -> bool:
    """Whether the directory ``path`` is a bag one of our commands wrote, so that ``--overwrite`` may replace it: it
    holds ``metadata.yaml``, the command's ``marker`` file (whose ``generator`` key is ``generator``; None: the
    marker's presence is enough) and nothing but bag files (:data:`BAG_FILE_SUFFIXES`) and ``own_files``."""
    import yaml

    path = Path(path)
    marker_path = path / marker
    if not marker_path.is_file() or not (path / "metadata.yaml").is_file():
        return False
    if generator is not None:
        try:
            if (yaml.safe_load(marker_path.read_text()) or {}).get("generator") != generator:
                return False
        except Exception:  # noqa: BLE001 - unreadable marker: not ours
            return False
    ours = {"metadata.yaml", marker, *own_files}
    return all(p.is_file() and (p.name in ours or p.name.endswith(BAG_FILE_SUFFIXES)) for p in path.iterdir())


def restamp(data: bytes, stamp_ns: int) -> bytes:
    """A copy of serialized ``data`` (first field a Header) with the header stamp set to ``stamp_ns``."""
    out = bytearray(data)
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    struct.pack_into(_endian(out) + "iI", out, 4, sec, nanosec)
    return bytes(out)




def restamp_tf(data: bytes, shift: Callable[[int], int]) -> bytes:
    """A copy of a serialized ``tf2_msgs/TFMessage`` with every transform's stamp ``s`` set to ``shift(s)`` (ns): its
    stamps sit inside a sequence, so the message is deserialized and serialized again (``/tf`` messages are small)."""
    store = typestore()
    msg = store.deserialize_cdr(data, TF_MESSAGE)
    for transform in msg.transforms:
        sec, nanosec = divmod(int(shift(transform.header.stamp.sec * NS_PER_S + transform.header.stamp.nanosec)),
                              NS_PER_S)
        transform.header.stamp.sec, transform.header.stamp.nanosec = sec, nanosec
    return bytes(store.serialize_cdr(msg, TF_MESSAGE))


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


class BagSource:
    """A rosbag2 directory (MCAP or sqlite3) opened for reading; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        from rosbags.rosbag2 import Reader, ReaderError

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag not found: {self.path}")
        metadata = self.path / METADATA
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except FileNotFoundError:
            raise ConfigError(f"cannot read bag {self.path}: no {METADATA} (not a rosbag2 directory)") from None
        except UnicodeDecodeError as exc:  # rosbags reads the metadata as UTF-8 text
            raise ConfigError(f"cannot read bag {self.path}: {metadata} is not text: {one_line(exc)}") from None
        except (ReaderError, OSError, ValueError, KeyError, TypeError) as exc:
            reason = one_line(exc)
            if "metadata" in reason.lower() and METADATA not in reason:  # e.g. "A metadata key is missing"
                reason = f"{metadata}: {reason}"
            raise ConfigError(f"cannot read bag {self.path}: {reason}") from None

    def __enter__(self) -> BagSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type (``pkg/msg/Name``)."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def message_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self._reader.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        return counts

    @property
    def start_ns(self) -> int:
        return self._reader.start_time

    @property
    def duration_ns(self) -> int:
        return self._reader.duration

    def messages(self, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
        """Raw CDR messages in log-time order, optionally only ``topics``."""
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        if topics is not None:
            unknown = set(topics) - {c.topic for c in conns}
            if unknown:
                raise ConfigError(f"bag {self.path} has no topic(s) {sorted(unknown)}; it has {sorted(self.topics)}")
        for conn, log_time, data in self._reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, log_time, bytes(data))

    def deserialize(self, message: BagMessage):
        """The message as a rosbags dataclass (same field names as the rclpy message)."""
        return typestore().deserialize_cdr(message.data, message.msgtype)


@dataclass(frozen=True)
class BagFacts:
    """What a checked bag holds: topic -> message type, topic -> message count, and its duration (s)."""

    topics: dict[str, str]
    counts: dict[str, int]
    duration_s: float


def scan_bag(path: str | Path) -> BagFacts:
    """Open and read the whole bag once, so a corrupt or truncated one fails here: ConfigError with one line naming
    the bag and the reason (missing, unreadable, fewer readable messages than its metadata lists, no topics)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"bag not found: {path}")
    try:
        with BagSource(path) as source:
            topics, counts = source.topics, source.message_counts
            seen = sum(1 for _ in source.messages())
            duration = source.duration_ns / 1e9
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds for broken files
        raise ConfigError(f"cannot read bag {path} (corrupt or truncated?): {type(exc).__name__}: {exc}") from None
    if seen != sum(counts.values()):
        raise ConfigError(f"bag {path} is truncated: metadata lists {sum(counts.values())} messages, {seen} readable")
    if not topics:
        raise ConfigError(f"bag {path} has no topics")
    return BagFacts(topics, counts, duration)


def rgb_of_message(store, message) -> np.ndarray:
    """Pixels of a rosbags Image or CompressedImage as (H, W, 3) uint8 R,G,B."""
    from ros_mmfusion.core.codec.image import decode_compressed, decode_rgb

    msg = store.deserialize_cdr(message.data, message.msgtype)
    if message.msgtype.endswith("/CompressedImage"):
        pixels = decode_compressed(msg.format, msg.data, order="rgb")
        if pixels.ndim != 3 or pixels.shape[2] < 3:
            raise MessageFormatError(f"{message.topic}: compressed image is not colour (shape {pixels.shape})")
        return np.ascontiguousarray(pixels[..., :3])
    return decode_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


def open_bag(bag: str | Path) -> BagSource:
    """``BagSource(bag)``, with every failure to open it as a ConfigError naming the bag."""
    try:
        return BagSource(bag)
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot read bag {bag}: {exc}" if Path(bag).exists() else str(exc)) from None
