"""Wav2Lip as an ONNX model (WAV2LIP_MODEL): speech + a face crop → 96×96 talking-face frames, and a mouth-open
curve measured on those frames for the 2D avatar. No Wav2Lip weights ship on PyPI; bring your own export with
inputs audio (B, 1, 80, 16) and face (B, 6, 96, 96) and output (B, 3, 96, 96) in 0..1."""
from __future__ import annotations

import logging
import math
import threading

import numpy as np

from pipeline.frames import MouthTrack, SpeechAudio

log = logging.getLogger(__name__)

MEL_RATE = 16000                        # Wav2Lip's audio front end (its hparams): 16 kHz,
N_FFT, HOP, WIN, N_MELS = 800, 200, 800, 80        # 80 mels, 12.5 ms hop → 80 mel frames a second,
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS, MIN_DB, REF_DB, MAX_ABS = 0.97, -100.0, 20.0, 4.0   # dB scaled into [-4, 4]
MEL_STEP = 16                           # mel frames in each window fed for one video frame
SIZE = 96
MOUTH = (slice(58, 84), slice(28, 68))  # rows, columns of the mouth in a 96×96 face crop


def melspectrogram(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """(80, T) log-mel in [-4, 4] as Wav2Lip was trained on: 16 kHz, pre-emphasis, |STFT|, Slaney mels, dB."""
    import librosa
    y = pcm.astype(np.float32)
    if sample_rate != MEL_RATE:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=MEL_RATE)
    y = np.append(y[:1], y[1:] - PREEMPHASIS * y[:-1])
    spec = np.abs(librosa.stft(y=y, n_fft=N_FFT, hop_length=HOP, win_length=WIN))
    basis = librosa.filters.mel(sr=MEL_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    db = 20 * np.log10(np.maximum(1e-5, basis @ spec)) - REF_DB
    return np.clip(2 * MAX_ABS * (db - MIN_DB) / -MIN_DB - MAX_ABS, -MAX_ABS, MAX_ABS).astype(np.float32)


def mel_windows(mel: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames, 1, 80, 16): for video frame i the 16 mel frames from 80·i/fps (the last window clamped)."""
    if mel.shape[1] < MEL_STEP:
        mel = np.pad(mel, ((0, 0), (0, MEL_STEP - mel.shape[1])), mode="edge")
    starts = np.minimum((np.arange(n_frames) * (MEL_RATE / HOP) / fps).astype(int), mel.shape[1] - MEL_STEP)
    return np.stack([mel[:, s:s + MEL_STEP] for s in starts])[:, None]


def face_input(face: np.ndarray) -> np.ndarray:
    """A (96, 96, 3) uint8 face crop → the (6, 96, 96) float input: lower half masked, then the reference."""
    ref = face.astype(np.float32) / 255.0
    masked = ref.copy()
    masked[SIZE // 2:] = 0.0
    return np.concatenate([masked, ref], axis=2).transpose(2, 0, 1)


def mouth_openness(frames: np.ndarray) -> np.ndarray:
    """Per frame 0..1: the share of dark pixels (the open mouth's cavity) in the mouth region of each crop."""
    gray = frames[:, MOUTH[0], MOUTH[1]].astype(np.float32).mean(axis=3)
    face_level = np.median(frames.astype(np.float32).mean(axis=3).reshape(len(frames), -1), axis=1)
    dark = (gray < 0.55 * face_level[:, None, None]).mean(axis=(1, 2))
    return np.clip((dark - 0.02) / 0.25, 0.0, 1.0).astype(np.float32)


def neutral_face() -> np.ndarray:
    """A plain skin-toned oval with a closed mouth line: the reference when no face crop is given."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    face = np.full((SIZE, SIZE, 3), 40, np.uint8)
    face[((yy - 50) / 44.0) ** 2 + ((xx - 48) / 36.0) ** 2 <= 1] = (200, 160, 140)
    face[70:72, 36:60] = (120, 60, 60)
    return face


class Wav2LipOnnx:
    """`render(pcm, rate)` → (frames uint8 (N, 96, 96, 3), mouth-open (N,)) with N = ceil(duration·fps);
    `track(audio)` → the MouthTrack (mouth_open and jaw_open from the frames). `face` is the avatar's face crop."""

    def __init__(self, model_path: str, face: np.ndarray | None = None, fps: float = 25.0, batch: int = 16,
                 threads: int = 2):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        by_shape = {tuple(i.shape[-2:]): i for i in inputs}
        if (N_MELS, MEL_STEP) not in by_shape or (SIZE, SIZE) not in by_shape or len(inputs) != 2:
            raise ValueError(f"{model_path}: not a Wav2Lip model (inputs {[(i.name, i.shape) for i in inputs]})")
        self.audio_name, self.face_name = by_shape[(N_MELS, MEL_STEP)].name, by_shape[(SIZE, SIZE)].name
        fixed = inputs[0].shape[0]
        self.batch = fixed if isinstance(fixed, int) and fixed > 0 else batch
        self.fps = fps
        self.face = face_input(face if face is not None else neutral_face())
        self._lock = threading.Lock()

    def render(self, pcm: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        n = max(1, math.ceil(len(pcm) / sample_rate * self.fps - 1e-6))
        windows = mel_windows(melspectrogram(pcm, sample_rate), n, self.fps)
        frames = []
        with self._lock:
            for i in range(0, n, self.batch):
                mels = windows[i:i + self.batch]
                count = len(mels)
                if count < self.batch:                       # a fixed-batch export needs full batches
                    mels = np.concatenate([mels, np.repeat(mels[-1:], self.batch - count, axis=0)])
                faces = np.repeat(self.face[None], len(mels), axis=0)
                out = self.session.run(None, {self.audio_name: mels, self.face_name: faces})[0][:count]
                frames.append(out)
        images = (np.clip(np.concatenate(frames), 0.0, 1.0) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        return images, mouth_openness(images)

    def track(self, audio: SpeechAudio) -> MouthTrack:
        _, openness = self.render(audio.pcm, audio.sample_rate)
        zeros = np.zeros_like(openness)
        return MouthTrack(self.fps, {"mouth_open": openness, "jaw_open": 0.85 * openness,
                                     "mouth_wide": zeros, "mouth_round": zeros})
