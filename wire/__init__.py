"""The wire format, on the ground floor: the msgpack envelope of every data-channel message (protocol) and the
PoseData codec (posedata). Imported by meeting/, connect/ and pipeline/; imports none of them."""
