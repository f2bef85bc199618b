"""avatars.clip: MP4 clips encoded in the process (PyAV), checked by reading them back with ffprobe and PyAV."""
from __future__ import annotations

import json
import subprocess

import av
import numpy as np
import pytest

from avatars.clip import ClipWriter, join_clips

RATE, FPS, SIZE = 32000, 25, (160, 96)
STEP = RATE // FPS                                   # 1280 samples a frame: whole AAC frames every 4 frames


def frames(n: int, seed: int) -> list[np.ndarray]:
    """`n` frames of SIZE, each a flat colour with a bright square moving across (something to compress)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frame = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
        frame[:] = rng.integers(40, 200, 3)
        frame[20:50, 4 * i % 120:4 * i % 120 + 30] = 250
        out.append(frame)
    return out


def tone(n_frames: int, hz: float) -> np.ndarray:
    t = np.arange(n_frames * STEP) / RATE
    return np.round(np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def write(path, pictures: list[np.ndarray], pcm: np.ndarray) -> None:
    clip = ClipWriter(str(path), pcm, RATE, FPS, SIZE)
    for picture in pictures:
        clip.write_frame(picture)
    clip.close()


def probe(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,duration,nb_frames,start_time",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    return {s["codec_name"]: s for s in json.loads(out)["streams"]}


def decoded(path) -> tuple[list[np.ndarray], np.ndarray]:
    """The video's frames (RGB) and the audio's samples (mono float) as a player gets them (edit list applied)."""
    with av.open(str(path)) as f:
        pictures = [frame.to_ndarray(format="rgb24") for frame in f.decode(video=0)]
    with av.open(str(path)) as f:
        sound = np.concatenate([frame.to_ndarray().reshape(-1) for frame in f.decode(audio=0)])
    return pictures, sound


def test_a_clip_is_h264_and_aac_with_its_index_first_and_both_streams_exactly_its_frames_long(tmp_path):
    write(tmp_path / "a.mp4", frames(20, 1), tone(20, 440))
    streams = probe(tmp_path / "a.mp4")
    assert set(streams) == {"h264", "aac"}
    for s in streams.values():
        assert float(s["start_time"]) == 0 and float(s["duration"]) == pytest.approx(20 / FPS, abs=1e-6)
    assert streams["h264"]["nb_frames"] == "20"
    data = (tmp_path / "a.mp4").read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")                 # fast start: playable while it downloads


def test_a_clip_shows_the_frames_and_plays_the_sound_it_was_given(tmp_path):
    given, pcm = frames(12, 2), tone(12, 440)
    write(tmp_path / "a.mp4", given, pcm)
    pictures, sound = decoded(tmp_path / "a.mp4")
    assert len(pictures) == 12
    for a, b in zip(given, pictures, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4     # H.264 at crf 23, colours as given
    assert len(sound) == len(pcm)                                   # the encoder's priming is hidden
    spectrum = np.abs(np.fft.rfft(sound[STEP:-STEP]))
    assert np.fft.rfftfreq(len(sound) - 2 * STEP, 1 / RATE)[spectrum.argmax()] == pytest.approx(440, abs=5)


def test_an_aborted_clip_leaves_no_file(tmp_path):
    clip = ClipWriter(str(tmp_path / "a.mp4"), tone(10, 440), RATE, FPS, SIZE)
    clip.write_frame(frames(1, 3)[0])
    clip.abort()
    assert list(tmp_path.iterdir()) == []


def test_joined_clips_play_one_after_another_with_the_sound_whole(tmp_path):
    parts = [(frames(8, 4), tone(8, 300)), (frames(12, 5), tone(12, 600)), (frames(4, 6), tone(4, 900))]
    for i, (pictures, pcm) in enumerate(parts):
        write(tmp_path / f"{i}.mp4", pictures, pcm)
    pcm = np.concatenate([pcm for _, pcm in parts])
    join_clips([str(tmp_path / f"{i}.mp4") for i in range(3)], pcm, RATE, str(tmp_path / "all.mp4"))
    streams = probe(tmp_path / "all.mp4")
    for s in streams.values():
        assert float(s["duration"]) == pytest.approx(24 / FPS, abs=1e-6)
    pictures, sound = decoded(tmp_path / "all.mp4")
    given = [p for pictures, _ in parts for p in pictures]
    assert len(pictures) == len(given) == 24
    for a, b in zip(given, pictures, strict=True):                   # in order: each frame where it was
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4
    assert len(sound) == len(pcm)
    data = (tmp_path / "all.mp4").read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")


def test_joining_nothing_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        join_clips([], np.zeros(0, np.int16), RATE, str(tmp_path / "all.mp4"))
