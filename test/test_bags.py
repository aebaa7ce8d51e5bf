"""Recording, replay and offline decoding of the compressed stream (real rclpy, Fast
DDS, real rosbag2 MCAP files): `mcucoder-ros record`, `mcucoder-ros play`,
`mcucoder decode-bag`."""
import csv
import shutil
import time

import numpy as np
import pytest
from conftest import ROOT, VECTORS
from ros_helpers import RosContext, start, stop

CLIP = ROOT / "data" / "clips" / "traffic.mp4"
NS = "/bagtest"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The pipeline on the bundled clip, recorded by `mcucoder-ros record`, while this
    process keeps every image_decoded frame (live decoding) by capture stamp."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    bag = tmp_path_factory.mktemp("bags") / "run"
    ros = RosContext("bag_probe")
    live = {}
    ros.node.create_subscription(Image, f"{NS}/image_decoded",
                                 lambda m: live.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec),
                                                            bytes(m.data)),
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    rec = start("mcucoder-ros", "record", "--out", bag, "--namespace", NS, "--duration", "40")
    time.sleep(3.0)                              # the recorder is up and subscribed
    # 7.5 frames/s: the clip's own 352x288 costs twice the 224x224 this was sized for; every
    # frame encoded and forwarded (none skipped for a receiver slowed by other jobs), so that
    # the recording holds one status per frame of the clip
    half = bag.parent / "half_rate.yaml"
    half.write_text((ROOT / "config" / "pipeline.yaml").read_text().replace("fps: 15.0", "fps: 7.5", 1)
                    .replace("follow_receiver_fps: true", "follow_receiver_fps: false"))
    pipe = start("mcucoder-ros", "pipeline", "--source", "video", "--input", CLIP, "--namespace", NS,
                 "--params", half)
    try:
        assert ros.spin_until(lambda: pipe.poll() is not None, 60), "pipeline did not end"
        ros.spin_for(1.0)
        out = stop(pipe)
    finally:
        stop(pipe)
        rec_out = stop(rec)                      # SIGTERM: the recorder closes the bag
        ros.close()
    assert pipe.returncode == 0, out
    assert rec.returncode == 0, rec_out
    return bag, live, rec_out


def test_bag_opens_with_rosbags_and_mcap_readers(recorded):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.highlevel import AnyReader

    from mcucoder_ros.bags import typestore
    bag, _, out = recorded
    with AnyReader([bag], default_typestore=typestore()) as r:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in r.connections}
        forwarded = sum(r.deserialize(raw, c.msgtype).channels > 0 for c, _, raw in
                        r.messages([c for c in r.connections if c.topic.endswith("bitrate_status")]))
    assert topics[f"{NS}/latent_gated"][0] == "mcucoder_ros/msg/LatentChannels"
    assert topics[f"{NS}/bitrate_status"][1] >= 75, out          # one per frame of the 90-frame clip (best effort)
    # every frame the controller forwarded (not skipped for a slow receiver) was recorded
    assert topics[f"{NS}/latent_gated"][1] >= max(20, forwarded - 2), (forwarded, out)
    mcap_file = next(bag.glob("*.mcap"))
    with open(mcap_file, "rb") as f:            # no typestore of ours: the definitions are in the file
        n = 0
        for schema, _channel, _message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]) \
                .iter_decoded_messages(topics=[f"{NS}/latent_gated"]):
            assert schema.encoding == "ros2msg" and "chunk_lengths" in schema.data.decode()
            assert sum(decoded.chunk_lengths) == len(decoded.payload)
            n += 1
    assert n == topics[f"{NS}/latent_gated"][1]


def test_decode_bag_frames_identical_to_live_decoding(recorded, tmp_path):
    from mcucoder_ros.apps.bag_tools import decode_bag
    from mcucoder_ros.codec.images import load_rgb
    bag, live, _ = recorded
    res = decode_bag(bag, tmp_path / "out.mp4", tmp_path / "frames", tmp_path / "ts.csv", progress=False)
    assert res["frames"] >= 20 and not res["errors"] and res["malformed"] == 0
    rows = list(csv.DictReader(open(tmp_path / "ts.csv")))
    assert len(rows) == res["frames"] and (tmp_path / "out.mp4").stat().st_size > 10_000
    compared = 0
    for r in rows:
        sec, frac = r["stamp_s"].split(".")
        key = (int(sec), int(frac))
        if key in live:
            img = load_rgb(tmp_path / "frames" / r["file"])
            assert img.tobytes() == live[key], f"frame {r['sequence']} differs from decoder_node's"
            compared += 1
    # a loaded host's live decoder drops stale frames; every frame decoded both ways is compared
    assert compared >= max(8, len(rows) // 3), f"only {compared} of {len(rows)} frames were seen live"


def test_decode_bag_channels_and_cli(recorded, tmp_path):
    import subprocess
    import sys
    bag, _, _ = recorded
    out = subprocess.run([sys.executable, "-m", "mcucoder_ros.cli", "decode-bag", str(bag), "-o",
                          str(tmp_path / "k3.mp4"), "--channels", "3", "--timestamps", str(tmp_path / "k3.csv")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {r["channels"] for r in csv.DictReader(open(tmp_path / "k3.csv"))} <= {"1", "2", "3"}


def test_truncated_and_corrupt_bags(recorded, tmp_path):
    from mcucoder_ros.apps.bag_tools import decode_bag
    from mcucoder_ros.bags import BagError
    bag, _, _ = recorded
    cut = tmp_path / "cut"
    shutil.copytree(bag, cut)
    f = next(cut.glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[:len(data) * 2 // 3])
    total = decode_bag(bag, tmp_path / "a.mp4", progress=False)["frames"]
    res = decode_bag(cut, tmp_path / "b.mp4", tmp_path / "fb", progress=False)
    assert 0 < res["frames"] < total, res                  # the frames before the damage
    assert "ends early or is damaged" in res["errors"][0]
    decode_bag(bag, tmp_path / "a.mp4", tmp_path / "fa", progress=False)
    for f in sorted((tmp_path / "fb").iterdir()):           # and they are the frames of the whole bag
        assert f.read_bytes() == (tmp_path / "fa" / f.name).read_bytes()
    garbage = tmp_path / "garbage"
    shutil.copytree(bag, garbage)
    g = next(garbage.glob("*.mcap"))
    g.write_bytes(b"\x00" * 64 + data[64:])
    with pytest.raises(BagError, match="garbage"):
        decode_bag(garbage, tmp_path / "c.mp4", progress=False)
    with pytest.raises(BagError, match="not found"):
        decode_bag(tmp_path / "nothing", tmp_path / "d.mp4", progress=False)


def test_bag_without_latents_or_with_unknown_model(tmp_path):
    from mcucoder_ros.apps.bag_tools import decode_bag
    from mcucoder_ros.bags import BagError, BagWriter
    w = BagWriter(tmp_path / "status_only")
    ts = w.ts
    Status = ts.types["mcucoder_ros/msg/BitrateStatus"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    w.add_topic("/x/bitrate_status", "mcucoder_ros/msg/BitrateStatus")
    st = Status(header=Header(stamp=Time(sec=1, nanosec=0), frame_id="c"), sequence=1, channels=3, channel_budget=4,
                available_bps=1.0, target_bps=1.0, sent_bps=1.0, estimate_source="x", source_fps=15.0,
                receiver_fps=15.0, forward_fps=15.0, frames_skipped=0,
                delivery_estimate_bps=1.0, queue_delay_s=0.0, chunk_loss=0.0, frame_scale=1, picture_scale=1)
    w.write("/x/bitrate_status", 1, ts.serialize_cdr(st, "mcucoder_ros/msg/BitrateStatus"))
    w.close()
    with pytest.raises(BagError, match="holds no mcucoder_ros/msg/LatentChannels"):
        decode_bag(tmp_path / "status_only", tmp_path / "o.mp4", progress=False)

    w = BagWriter(tmp_path / "other_model")
    Lat = ts.types["mcucoder_ros/msg/LatentChannels"]
    w.add_topic("/x/latent", "mcucoder_ros/msg/LatentChannels")
    m = Lat(header=Header(stamp=Time(sec=1, nanosec=0), frame_id="c"), sequence=0, model_id=0xDEADBEEF,
            bitstream_version=1, num_channels=12, latent_height=28, latent_width=28,
            channel_indices=np.array([0], np.uint8), chunk_lengths=np.array([4], np.uint16),
            payload=np.array([0, 128, 0, 0], np.uint8), reference_deltas=np.array([], np.uint8), width=224, height=224,
            scale_shift=0)
    w.write("/x/latent", 1, ts.serialize_cdr(m, "mcucoder_ros/msg/LatentChannels"))
    w.close()
    with pytest.raises(BagError, match="0xdeadbeef, which no shipped model has"):
        decode_bag(tmp_path / "other_model", tmp_path / "o.mp4", progress=False)


def test_play_republishes_every_frame_to_image_decoded(recorded):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from mcucoder_ros.bags import topics_of
    bag, _, _ = recorded
    n = topics_of(bag)[f"{NS}/latent_gated"][1]
    ros = RosContext("play_probe")
    got = []
    ros.node.create_subscription(Image, "/playtest/image_decoded", got.append,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    # a quarter of the recorded rate: the decoder keeps up even on a loaded host, so
    # that none is dropped as stale and every recorded frame must arrive
    proc = start("mcucoder-ros", "play", bag, "--decode", "--namespace", "/playtest", "--topics", "latent_gated",
                 "--rate", "0.25")
    try:
        assert ros.spin_until(lambda: proc.poll() is not None, 90)
        ros.spin_for(0.5)
        out = stop(proc)
    finally:
        stop(proc)
        ros.close()
    assert proc.returncode == 0, out
    assert f"latent_gated: {n}; decoded {n}" in out, out
    assert len(got) == n, out


def test_sqlite3_bags_read_as_well(recorded, tmp_path):
    """A rosbag2 sqlite3 bag (ros2 bag record's default storage) of the same messages
    decodes to the same frames as the MCAP one."""
    from mcucoder_ros.apps.bag_tools import decode_bag
    from mcucoder_ros.bags import BagWriter, read_messages
    bag, _, _ = recorded
    w = BagWriter(tmp_path / "sq", storage="sqlite3")
    for m in read_messages(bag, [f"{NS}/latent_gated"]):
        w.add_topic(m.topic, m.msgtype)
        w.write(m.topic, m.timestamp_ns, m.raw)
    w.close()
    assert list((tmp_path / "sq").glob("*.db3"))
    a = decode_bag(bag, tmp_path / "a.mp4", tmp_path / "fa", progress=False)
    b = decode_bag(tmp_path / "sq", tmp_path / "b.mp4", tmp_path / "fb", progress=False)
    assert a["frames"] == b["frames"] > 0
    for f in sorted((tmp_path / "fa").iterdir()):
        assert f.read_bytes() == (tmp_path / "fb" / f.name).read_bytes()


@pytest.mark.parametrize("definition", [0, 1, 2])
def test_bags_of_earlier_message_definitions_decode_unchanged(tmp_path, decoder, definition):
    """A bag recorded before LatentChannels carried the scale shift (older, before the
    picture size; older still, before it had reference_deltas) decodes to the same pictures as the golden frames,
    and `play` republishes its latents in today's definition."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from mcucoder_ros.apps.bag_tools import decode_bag
    from mcucoder_ros.bags import LEGACY_LATENT_DEFINITIONS, BagWriter, current_raw, typestore
    from mcucoder_ros.codec import bitstream

    old = get_typestore(Stores.ROS2_KILTED)
    old.register(get_types_from_msg(LEGACY_LATENT_DEFINITIONS[definition], "mcucoder_ros/msg/LatentChannels"))
    Lat, Header, Time = (old.types[t] for t in ("mcucoder_ros/msg/LatentChannels", "std_msgs/msg/Header",
                                                 "builtin_interfaces/msg/Time"))
    w = BagWriter(tmp_path / "old")
    w.ts = old
    w.add_topic("/mcucoder/latent_gated", "mcucoder_ros/msg/LatentChannels")
    frames = [bitstream.unpack((VECTORS / f"{n}.mcf").read_bytes()) for n in ("astronaut", "road", "extremes")]
    raws = []
    for i, f in enumerate(frames):
        fields = {"header": Header(stamp=Time(sec=100 + i, nanosec=0), frame_id="camera"), "sequence": f.sequence,
                  "model_id": f.model_id, "bitstream_version": 1, "num_channels": 12, "latent_height": 28,
                  "latent_width": 28, "channel_indices": np.array(f.channel_indices, np.uint8),
                  "chunk_lengths": np.array(f.chunk_lengths, np.uint16),
                  "payload": np.frombuffer(f.payload, np.uint8)}
        if definition <= 1:
            fields["reference_deltas"] = np.array([], np.uint8)
        if definition == 0:
            fields["width"] = fields["height"] = 224
        raws.append(old.serialize_cdr(Lat(**fields), "mcucoder_ros/msg/LatentChannels"))
        w.write("/mcucoder/latent_gated", (100 + i) * 10**9, raws[-1])
    w.close()
    res = decode_bag(tmp_path / "old", tmp_path / "old.mp4", frames_dir=tmp_path / "png", progress=False)
    assert res["frames"] == 3 and res["malformed"] == 0
    from mcucoder_ros.codec.images import load_rgb
    for i, f in enumerate(frames):
        got = load_rgb(sorted((tmp_path / "png").glob("*.png"))[i])
        assert np.array_equal(got, decoder.decode(f))
    now = typestore().deserialize_cdr(current_raw(raws[0], "mcucoder_ros/msg/LatentChannels"),
                                      "mcucoder_ros/msg/LatentChannels")
    assert (now.width, now.height) == ((224, 224) if definition == 0 else (0, 0)) and now.scale_shift == 0
    assert bitstream.from_message(now).chunks == frames[0].chunks
