"""MP4 clips made in this process with PyAV (FFmpeg's own libraries, the package aiortc already brings): H.264 +
AAC, fast start, as avatars.say's ffmpeg makes them, without an ffmpeg process for each one.

A one-to-one session's reply is a clip per sentence, and a clip's first frame is awaited by a person. An ffmpeg
process costs about 90 ms of CPU before its first frame (starting, linking its libraries, opening the encoders),
and every frame crosses a pipe as 786 KB of RGB; here a 42-frame clip is encoded in about 70 ms in all.
`ClipWriter` takes a clip's whole audio at the start (the sentence's speech exists before its first frame is
drawn) and its frames one by one; `join_clips` puts clips one after another into one file (their video copied,
the audio encoded once).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction

import av
import cv2
import numpy as np

CRF = 23                          # H.264's constant quality (the x264 default)
AUDIO_BITRATE = 64_000            # AAC, bits a second (speech)


class ClipWriter:
    """One MP4 at `path`: `write_frame` each RGB frame (`size`: width, height), then `close()` to finish the file,
    or `abort()` to drop it. `pcm` is the clip's whole audio, mono 16-bit at `rate`."""

    def __init__(self, path: str, pcm: np.ndarray, rate: int, fps: int, size: tuple[int, int],
                 preset: str = "veryfast", audio_bitrate: int = AUDIO_BITRATE):
        self.path, self.fps, self.frames = path, fps, 0
        self._out = av.open(path, "w", format="mp4", options={"movflags": "+faststart"})
        try:
            self._video = self._out.add_stream("libx264", rate=fps, options={"preset": preset, "crf": str(CRF)})
            self._video.pix_fmt = "yuv420p"
            self._video.width, self._video.height = size
            audio = self._out.add_stream("aac", rate=rate, layout="mono")
            audio.bit_rate = audio_bitrate
            self._out.mux(_encoded(audio, pcm, rate))
        except BaseException:
            self.abort()
            raise

    def write_frame(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        frame.pts, frame.time_base = self.frames, Fraction(1, self.fps)
        self._out.mux(self._video.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and write the file's index (before its media: fast start)."""
        self._out.mux(self._video.encode(None))
        self._out.close()

    def abort(self) -> None:
        """Drop the clip: the container closed as it is and the file removed."""
        try:
            self._out.close()
        except av.error.FFmpegError:
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def join_clips(paths: Sequence[str], pcm: np.ndarray, rate: int, out_path: str,
               audio_bitrate: int = AUDIO_BITRATE) -> None:
    """The clips at `paths` one after another in one MP4 at `out_path` (fast start): their H.264 copied as it is,
    `pcm` (the clips' audio joined, mono 16-bit at `rate`) encoded once, so the AAC has no seams."""
    if not paths:
        raise ValueError("no clips to join")
    with av.open(out_path, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = audio = next_dts = None
        for path in paths:
            with av.open(path) as clip:
                source = clip.streams.video[0]
                if video is None:
                    video = out.add_stream_from_template(source)
                    audio = out.add_stream("aac", rate=rate, layout="mono")
                    audio.bit_rate = audio_bitrate
                shift = None
                for packet in clip.demux(source):
                    if packet.dts is None:                 # the demuxer's empty packet at the end
                        continue
                    if shift is None:                      # this clip's decoding starts where the last one's ended
                        shift = 0 if next_dts is None else next_dts - packet.dts
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    next_dts = packet.dts + packet.duration
                    packet.stream = video
                    out.mux(packet)
        out.mux(_encoded(audio, pcm, rate))


def _encoded(stream, pcm: np.ndarray, rate: int) -> list:
    """All of `pcm` (mono 16-bit at `rate`) encoded by the audio `stream`: its packets, the encoder flushed."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, np.int16)[None, :], format="s16", layout="mono")
    frame.sample_rate, frame.pts = rate, 0
    return stream.encode(frame) + stream.encode(None)
