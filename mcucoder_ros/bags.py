"""Recorded streams: rosbag2 bags (MCAP or sqlite3) of LatentChannels, read and written
without a ROS install, through the `rosbags` library.

The message definitions come from the package's own msg/ files (the one source of
truth for the wire format), registered in a rosbags typestore beside the standard ROS 2
(Kilted) ones; bags written here embed them, so any MCAP or rosbag2 reader can open
them without this package.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import resources

PACKAGE = "mcucoder_ros"
LATENT_TYPE = f"{PACKAGE}/msg/LatentChannels"


class BagError(RuntimeError):
    """A bag that cannot be opened, holds no latents, or is damaged."""


def msg_dir() -> Path:
    """The package's msg/ folder: in the checkout, or installed under share/."""
    return resources.find("msg", "the mcucoder_ros message definitions (msg/*.msg)", marker="LatentChannels.msg")


def typestore():
    """ROS 2 Kilted's standard types + mcucoder_ros/msg/* from the .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for f in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"{PACKAGE}/msg/{f.stem}"))
    ts.register(types)
    return ts


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    timestamp_ns: int          # when the recorder received it
    raw: bytes                 # CDR, as on the wire


def _reader(path):
    from rosbags.highlevel import AnyReader

    p = Path(path)
    if not p.exists():
        raise BagError(f"bag not found: {p}")
    try:
        reader = AnyReader([p], default_typestore=typestore())
        reader.open()
    except Exception as e:      # rosbags raises its own error types for every kind of damage
        raise BagError(f"cannot open bag {p}: {e}") from None
    return reader


def _mcap_files(path) -> list[Path]:
    p = Path(path)
    return sorted(p.glob("*.mcap")) if p.is_dir() else ([p] if p.suffix == ".mcap" and p.exists() else [])


def _read_mcap_sequentially(path, topics, errors: list | None, why: str) -> Iterator[BagMessage]:
    """A bag whose MCAP file has no valid summary (a recording that was cut off: the
    index is written last): read its records from the start, as far as they go."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    damage = []
    for f in _mcap_files(path):
        schemas, channels = {}, {}
        with open(f, "rb") as fh:
            try:
                for rec in StreamReader(fh, skip_magic=False).records:
                    if isinstance(rec, Schema):
                        schemas[rec.id] = rec.name
                    elif isinstance(rec, Channel):
                        channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, ""))
                    elif isinstance(rec, Message) and rec.channel_id in channels:
                        topic, msgtype = channels[rec.channel_id]
                        if not topics or topic in topics:
                            yield BagMessage(topic, msgtype, rec.log_time, bytes(rec.data))
            except Exception as e:   # noqa: BLE001 - the records before the damage are kept
                detail = f": {e}" if str(e) else ""
                damage.append(f"{f.name} ends early or is damaged ({type(e).__name__}{detail})")
    msg = f"bag {path}: {why}; read sequentially up to the damage: " + ("; ".join(damage) or "no damage found")
    if errors is None:
        if damage:
            raise BagError(msg)
    else:
        errors.append(msg)


def read_messages(path, topics=None, errors: list | None = None) -> Iterator[BagMessage]:
    """Every message of the bag (of `topics` if given) in time order.  Damage (a
    truncated or corrupted file) ends the iteration after the last good message; the
    error is appended to `errors` (or raised as BagError when no list is given).  An
    MCAP bag without a valid index (cut off while recording) is read sequentially."""
    try:
        reader = _reader(path)
    except BagError as e:
        if not _mcap_files(path):
            raise
        yield from _read_mcap_sequentially(path, topics, errors, str(e))
        return
    try:
        conns = [c for c in reader.connections if not topics or c.topic in topics]
        try:
            for conn, ts, raw in reader.messages(connections=conns):
                yield BagMessage(conn.topic, conn.msgtype, ts, bytes(raw))
        except Exception as e:   # noqa: BLE001 - the frames before the damage are kept
            msg = f"bag {path} is damaged after the last good message: {type(e).__name__}: {e}"
            if errors is None:
                raise BagError(msg) from None
            errors.append(msg)
    finally:
        reader.close()


def topics_of(path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count)."""
    try:
        reader = _reader(path)
    except BagError:
        if not _mcap_files(path):
            raise
        out: dict[str, tuple[str, int]] = {}
        for m in _read_mcap_sequentially(path, None, [], ""):
            out[m.topic] = (m.msgtype, out.get(m.topic, ("", 0))[1] + 1)
        if not out:
            raise
        return out
    try:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    finally:
        reader.close()


def latent_topics(path, topics: dict | None = None) -> list[str]:
    """The LatentChannels topics of a bag (`topics`: its topics_of, if already read)."""
    topics = topics_of(path) if topics is None else topics
    lat = [t for t, (ty, _) in topics.items() if ty == LATENT_TYPE]
    if not lat:
        have = ", ".join(f"{t} ({ty})" for t, (ty, _) in topics.items()) or "no topics"
        raise BagError(f"bag {path} holds no {LATENT_TYPE} messages (it has: {have})")
    return lat


# LatentChannels as earlier versions of this package defined it, newest first: bags
# recorded with them still decode (the first: any size, bitstream versions 1 to 3; the
# older two: 224x224, versions 1 and 2; the fields added later are absent, and
# bitstream.from_message reads width and height 0 as 224x224 and no scale_shift as 0).
_LATENT_V1_FIELDS = """std_msgs/Header header
uint32 sequence
uint32 model_id
uint8 bitstream_version
uint8 num_channels
uint8 latent_height
uint8 latent_width
uint8[] channel_indices
uint16[] chunk_lengths
uint8[] payload"""
LEGACY_LATENT_DEFINITIONS = (       # each adds fields to the one after it
    _LATENT_V1_FIELDS + "\nuint8[] reference_deltas\nuint16 width\nuint16 height",
    _LATENT_V1_FIELDS + "\nuint8[] reference_deltas",
    _LATENT_V1_FIELDS,
)
_legacy_stores: list = []


def _legacy_typestores() -> list:
    if not _legacy_stores:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
        for text in LEGACY_LATENT_DEFINITIONS:
            ts = get_typestore(Stores.ROS2_KILTED)
            ts.register(get_types_from_msg(text, LATENT_TYPE))
            _legacy_stores.append(ts)
    return _legacy_stores


def deserialize_raw(raw: bytes, msgtype: str, ts=None):
    """CDR bytes -> message, with this package's definitions; a LatentChannels recorded
    with an earlier definition is read with that one."""
    ts = ts or typestore()
    try:
        return ts.deserialize_cdr(raw, msgtype)
    except Exception:           # rosbags raises its own error types; an earlier definition may fit
        if msgtype != LATENT_TYPE:
            raise
        for old in _legacy_typestores():
            try:
                return old.deserialize_cdr(raw, msgtype)
            except Exception:   # noqa: BLE001, S112 - try the next one, else the first error
                continue
        raise


def current_raw(raw: bytes, msgtype: str, ts=None) -> bytes:
    """The CDR bytes of a message as this package defines it now: a LatentChannels
    recorded with an earlier definition is rewritten (the fields added since get their
    defaults: width and height 0, read as 224x224); anything else is returned as is."""
    if msgtype != LATENT_TYPE:
        return raw
    ts = ts or typestore()
    try:
        ts.deserialize_cdr(raw, msgtype)
        return raw
    except Exception:           # noqa: BLE001 - recorded with an earlier definition, or damaged
        pass
    old = deserialize_raw(raw, msgtype, ts)
    cls = ts.types[msgtype]
    import numpy as np
    fields = {name: getattr(old, name, None) for name in cls.__dataclass_fields__}
    defaults = {"reference_deltas": np.array([], np.uint8), "width": 0, "height": 0, "scale_shift": 0}
    fields = {k: (defaults[k] if v is None else v) for k, v in fields.items()}
    return ts.serialize_cdr(cls(**fields), msgtype)


def deserialize(msg: BagMessage, ts=None):
    return deserialize_raw(msg.raw, msg.msgtype, ts)


class BagWriter:
    """A rosbag2 bag in MCAP storage with the message definitions embedded.

    A recording may be cut off (power, SIGKILL) before the index at the end of the file
    is written; the MCAP chunk being filled is then lost.  So the chunk is closed and
    written out every `flush_s` seconds of recording (rosbags would otherwise hold up to
    1 MiB, about 13 s of latents, in memory), and readers recover the rest
    (read_messages reads such a file sequentially)."""

    def __init__(self, path, storage: str = "mcap", flush_s: float = 1.0):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already (rosbag2 bags are folders; choose a new name)")
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self.ts = typestore()
        self.writer = Writer(self.path, version=9, storage_plugin=plugin)
        self.writer.open()
        self.conns = {}
        self.counts: dict[str, int] = {}
        self.flush_s, self._last_flush, self._unflushed = flush_s, None, 0

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.ts)
            self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, raw: bytes) -> None:
        self.writer.write(self.conns[topic], timestamp_ns, raw)
        self.counts[topic] += 1
        self._unflushed += 1
        if self._last_flush is None:
            self._last_flush = timestamp_ns
        elif (timestamp_ns - self._last_flush) * 1e-9 >= self.flush_s:
            self._flush(timestamp_ns)

    def _flush(self, now_ns: int) -> None:
        storage = getattr(self.writer, "storage", None)     # rosbags' MCAP storage (no public flush)
        if self._unflushed and hasattr(storage, "close_chunk") and hasattr(storage, "bio"):
            storage.close_chunk()
            storage.bio.flush()
        self._last_flush, self._unflushed = now_ns, 0

    def close(self) -> None:
        self.writer.close()


def shipped_model_dirs() -> dict[int, Path]:
    """model id -> model folder, for every model folder beside the default one."""
    import numpy as np

    from .codec.model import ENCODER_FILE, default_model_dir

    out = {}
    for d in sorted(default_model_dir().parent.iterdir()):
        f = d / ENCODER_FILE
        if f.exists():
            with np.load(f) as z:
                out[int(z["model_id"])] = d
    return out
