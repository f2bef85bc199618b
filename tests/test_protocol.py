"""The wire format: golden bytes both ways, round trips, and strict decoding of bad input."""
import json
import math
import pathlib

import msgpack
import pytest

from wire import posedata
from wire import protocol as p

GOLDEN = json.loads((pathlib.Path(__file__).parent / "golden" / "protocol.json").read_text())
DOC = (pathlib.Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text()


def _value(v):
    if isinstance(v, dict) and "$bin" in v:
        return bytes.fromhex(v["$bin"])
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _value(x) for k, x in v.items()}
    return v


def _build(case):
    fields = _value(case["fields"])
    if case["type"] == "Bundle":
        fields["messages"] = tuple(fields["messages"])
    if case["type"] == "PresenceMsg":
        fields["members"] = tuple(p.Member(**m) for m in fields["members"])
        fields["event"] = p.Presence(fields["event"])
    return getattr(p, case["type"])(**fields)


@pytest.mark.parametrize("case", GOLDEN["messages"], ids=lambda c: c["name"])
def test_golden_message_bytes(case):
    msg = _build(case)
    assert p.encode(msg).hex() == case["hex"]
    decode = p.decode_client if case["direction"] == "client" else p.decode_server
    assert decode(bytes.fromhex(case["hex"])) == msg
    assert case["hex"] in DOC, "docs/PROTOCOL.md must show the golden bytes"


@pytest.mark.parametrize("case", GOLDEN["pose_payloads"], ids=lambda c: f"{c['kind']}-{c['bits']}")
def test_golden_pose_payloads(case):
    bits = case["bits"]
    q = posedata.quantize(case["values"], bits)
    assert q == case["q"]
    if case["kind"] == "key":
        data = posedata.encode_key(q, bits, case["key_id"], case["seq"])
        assert posedata.decode(data)[1] == q
    else:
        data = posedata.encode_delta(q, case["key_q"], bits, case["key_id"], case["seq"])
        assert posedata.decode(data, case["key_q"])[1] == q
    assert data.hex() == case["hex"]
    assert case["hex"] in DOC


def test_relayed_pose_frame_fits_48_bytes_on_the_wire():
    q = posedata.quantize({"yaw": 0.4, "mouth_open": 0.7}, 8)
    frame = p.relay_pose(posedata.encode_key(q, 8, 31, 255), 63)
    assert len(frame) + 2 <= 48                       # + the WebSocket frame header
    assert p.decode_server(frame) == p.Pose(posedata.encode_key(q, 8, 31, 255), 63)


@pytest.mark.parametrize("bits", posedata.PRECISIONS)
def test_pose_round_trip_precision(bits):
    values = {"yaw": -0.7, "pitch": 0.2, "roll": 0.1, "eye_l": 0.3, "smile": -0.5, "mouth_open": 0.9}
    head, q = posedata.decode(posedata.encode_key(posedata.quantize(values, bits), bits, 5, 9))
    back = posedata.dequantize(q, bits)
    assert (head.key, head.bits, head.key_id, head.seq) == (True, bits, 5, 9)
    for name, v in values.items():
        lo, hi = next((lo, hi) for n, lo, hi in posedata.FIELDS if n == name)
        assert abs(back[name] - v) <= (hi - lo) / ((1 << bits) - 1) / 2 + 1e-9


def test_stream_sends_a_key_frame_when_a_delta_would_be_as_large():
    stream, receiver = posedata.PoseStream(8, 30), posedata.PoseReceiver()
    every_field = [{name: lo + (hi - lo) * ((i + 7 * k) % 17) / 17 for i, (name, lo, hi) in enumerate(posedata.FIELDS)}
                   for k in range(3)]
    frames = [stream.encode_values(v) for v in every_field]
    assert [bool(f[0] & posedata.KEY_FLAG) for f in frames] == [True, True, True]     # everything moved
    assert len({f[0] & 0x1F for f in frames}) == 3 and all(len(f) == posedata.key_size(8) for f in frames)
    still = stream.encode_values(every_field[2])
    assert not still[0] & posedata.KEY_FLAG and len(still) == 2 + posedata.MASK_BYTES     # nothing moved: a delta
    for frame, values in zip(frames + [still], every_field + every_field[2:]):
        got = receiver.read(3, frame)
        assert got == posedata.dequantize(posedata.quantize(values, 8), 8)


def test_delta_carries_only_changed_fields():
    key = posedata.quantize({"yaw": 0.1}, 8)
    same = posedata.encode_delta(key, key, 8, 1, 2)
    assert len(same) == 2 + posedata.MASK_BYTES                # nothing changed, nothing sent
    moved = posedata.quantize({"yaw": 0.3, "mouth_open": 0.5}, 8)
    delta = posedata.encode_delta(moved, key, 8, 1, 3)
    assert len(delta) == 2 + posedata.MASK_BYTES + 2
    assert posedata.decode(delta, key)[1] == moved
    with pytest.raises(posedata.PoseDataError):
        posedata.decode(delta)                                 # a delta needs its key frame


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "x", None])
def test_quantize_refuses_non_numbers(bad):
    with pytest.raises(posedata.PoseDataError):
        posedata.quantize({"yaw": bad}, 8)


def _pack(*fields):
    return msgpack.packb(list(fields), use_bin_type=True)


KEY = posedata.encode_key(posedata.quantize({}, 8), 8, 0, 0)
BAD_CLIENT_MESSAGES = {
    "text": ("hello", "text_frame", p.CloseCode.UNSUPPORTED_DATA),
    "oversized": (_pack(1, 3, "x" * 5000), "too_large", p.CloseCode.TOO_BIG),
    "not_msgpack": (b"\xc1\xc1\xc1", "malformed", None),
    "truncated": (_pack(1, 1, KEY)[:-3], "malformed", None),
    "trailing_bytes": (_pack(1, 3, "hi") + b"\x00", "malformed", None),
    "not_an_array": (msgpack.packb({"v": 1}), "malformed", None),
    "too_short": (_pack(1), "malformed", None),
    "wrong_version": (_pack(2, 1, KEY), "unsupported_version", p.CloseCode.UNSUPPORTED_VERSION),
    "float_version": (_pack(1.0, 1, KEY), "malformed", None),
    "unknown_type": (_pack(1, 99), "unknown_type", None),
    "server_type_from_client": (_pack(1, 5, 0, 30, 8, 1), "unknown_type", None),
    "pose_not_binary": (_pack(1, 1, "abc"), "invalid_field", None),
    "pose_wrong_length": (_pack(1, 1, KEY[:-1]), "invalid_field", None),
    "pose_bad_mask": (_pack(1, 1, bytes([0, 0, 0, 0, 0xFF])), "invalid_field", None),
    "pose_extra_field": (_pack(1, 1, KEY, 3), "invalid_field", None),
    "chat_blank": (_pack(1, 3, "   "), "invalid_field", None),
    "chat_nan": (_pack(1, 3, math.nan), "invalid_field", None),
    "chat_too_long": (_pack(1, 3, "x" * (p.MAX_CHAT_CHARS + 1)), "invalid_field", None),
    "join_missing_token": (_pack(1, 0), "invalid_field", None),
    "bool_as_int": (_pack(True, 1, KEY), "malformed", None),
    "bad_utf8": (b"\x93\x01\x03\xa2\xff\xfe", "malformed", None),
}


@pytest.mark.parametrize("name", BAD_CLIENT_MESSAGES)
def test_strict_decoding(name):
    data, code, close_code = BAD_CLIENT_MESSAGES[name]
    with pytest.raises(p.ProtocolError) as err:
        p.decode_client(data)
    assert err.value.code == code
    assert err.value.close_code == close_code


def test_nan_and_out_of_range_in_server_messages():
    with pytest.raises(p.ProtocolError, match="NaN"):
        p.decode_server(_pack(1, 2, math.nan, 3, 100, 0))
    with pytest.raises(p.ProtocolError, match="outside"):
        p.decode_server(_pack(1, 2, 10, 15, 100, 0))            # viseme 15 does not exist
    with pytest.raises(p.ProtocolError, match="outside"):
        p.decode_server(_pack(1, 5, 0, 0, 8, 1))                # 0 fps
