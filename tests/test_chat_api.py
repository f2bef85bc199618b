"""The chat API: the request checks and the prompt (fast), then the real embedded LLM under gunicorn, an
endpoint on a closed port, and one that dies mid-reply (slow)."""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.request

import pytest

import config
from connect.chat import build_chat_messages, model_id, parse_chat
from meeting.errors import InvalidRequest
from run import create_app
from tests.conftest import free_port

SETTINGS = config.load(config.TESTING)
LIMIT, MAX_HISTORY = SETTINGS.CHAT_MAX_MESSAGE_CHARS, SETTINGS.CHAT_MAX_HISTORY


def events(text: str) -> list[tuple[str, dict]]:
    """Server-sent events as (event, data); an event without a name is a "message"."""
    found = []
    for block in filter(None, text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((fields.get("event", "message"), json.loads(fields["data"])))
    return found


# --- the request and the prompt (fast) --------------------------------------------------------------

def test_a_request_is_read_and_tidied():
    body = {"message": "  What next?\n", "conversation_history": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": ""}]}
    message, history = parse_chat(body, SETTINGS)
    assert message == "What next?"
    assert history == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": ""}]
    assert parse_chat({"message": "x" * LIMIT, "conversation_history": None}, SETTINGS) == ("x" * LIMIT, [])


BAD_BODIES = [
    ({}, "message is required"),
    ({"message": None}, "message is required"),
    ({"message": 5}, "message must be a string"),
    ({"message": True}, "message must be a string"),
    ({"message": ["hi"]}, "message must be a string"),
    ({"message": ""}, "must not be empty"),
    ({"message": " \n\t"}, "must not be empty"),
    ({"message": "x" * (LIMIT + 1)}, f"at most {LIMIT}"),
    ({"message": "hi", "conversation_history": "hello"}, "must be a list"),
    ({"message": "hi", "conversation_history": {"role": "user", "content": "a"}}, "must be a list"),
    ({"message": "hi", "conversation_history": ["hello"]}, "conversation_history[0] must be an object"),
    ({"message": "hi", "conversation_history": [{"role": "user"}]}, "conversation_history[0] must be an object"),
    ({"message": "hi", "conversation_history": [{"role": "user", "content": 3}]}, "content a string"),
    ({"message": "hi", "conversation_history": [{"role": "user", "content": "a"}, {"content": "b"}]},
     "conversation_history[1].role must be one of user, assistant, system"),
    ({"message": "hi", "conversation_history": [{"role": "tool", "content": "a"}]}, "role must be one of"),
    ({"message": "hi", "conversation_history": [{"role": "user", "content": "a"}] * (MAX_HISTORY + 1)},
     f"at most {MAX_HISTORY}"),
]


@pytest.mark.parametrize("body,reason", BAD_BODIES)
def test_a_bad_request_is_refused_with_its_reason(body, reason):
    with pytest.raises(InvalidRequest) as refused:
        parse_chat(body, SETTINGS)
    assert reason in refused.value.message


@pytest.mark.parametrize("path", ["/api/chat/completion", "/api/chat/stream"])
@pytest.mark.parametrize("body,reason", BAD_BODIES + [("not json", "JSON object"), ("{broken", "JSON object"),
                                                      ("[1, 2]", "JSON object")])
def test_bad_requests_get_400_json_before_any_model_loads(client, path, body, reason):
    if isinstance(body, str):
        r = client.post(path, data=body, content_type="application/json")
    else:
        r = client.post(path, json=body)
    assert r.status_code == 400 and r.is_json, r.data
    assert r.json["success"] is False and r.json["error"] == "bad_request" and reason in r.json["message"]
    assert not client.application.extensions["avatar"].hosts.runtime.models.known()


def test_other_http_errors_are_json(client):
    r = client.post("/api/chat/completion", data="x" * 20000, content_type="application/json")
    assert r.status_code == 413 and r.json["success"] is False
    r = client.get("/api/chat/completion")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed"
    r = client.post("/api/chat/completion", data="message=hi", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and r.json["error"] == "bad_request"


def test_the_prompt_is_the_instructions_the_newest_turns_that_fit_then_the_message():
    history = [{"role": "system", "content": "Answer in French."}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 90} for i in range(10)]
    messages = build_chat_messages("And now?", history, name="Ava", budget=400)
    assert messages[0]["role"] == "system" and "You are Ava" in messages[0]["content"]
    assert messages[0]["content"].endswith("Answer in French.")
    assert messages[-1] == {"role": "user", "content": "And now?"}
    kept = messages[1:-1]
    assert [m["content"][:6] for m in kept] == ["turn 7", "turn 8", "turn 9"]      # the newest, in order
    assert sum(len(m["content"]) for m in kept) + len("Answer in French.") <= 400


def test_the_prompt_bounds_the_history_system_entries_and_drops_blank_turns():
    history = [{"role": "system", "content": "s" * 5000}, {"role": "user", "content": " "},
               {"role": "assistant", "content": "Hello."}]
    messages = build_chat_messages("Hi", history, language="zh", budget=300)
    assert "虚拟形象" in messages[0]["content"] and messages[0]["content"].count("s") <= 100
    assert messages[1:] == [{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hi"}]
    assert [m["role"] for m in build_chat_messages("Hi", history, budget=0)] == ["system", "user"]


def test_models_lists_the_embedded_model_without_loading_it(client):
    r = client.get("/api/chat/models")
    assert r.status_code == 200 and r.json["backend"] == "embedded"
    active = [m for m in r.json["models"] if m["active"]]
    assert len(active) == 1 and active[0]["id"] == r.json["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert active[0]["kind"] == "embedded" and active[0]["available"] and not active[0]["loaded"]
    assert not client.application.extensions["avatar"].hosts.runtime.models.known()


def test_models_names_the_configured_endpoint_first():
    settings = {"TESTING": True, "LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MODEL": "llama3"}
    models = create_app(settings).test_client().get("/api/chat/models").json
    assert models["backend"] == "remote" and models["model"] == "llama3"
    assert models["models"][0] == {"id": "llama3", "kind": "remote", "url": "http://127.0.0.1:9/v1", "active": True}
    assert all(not m["active"] for m in models["models"][1:]) and len(models["models"]) >= 2
    assert model_id(SETTINGS.replace(LLM_BASE_URL="http://x/v1")) == "default"


# --- the real embedded LLM under gunicorn (slow) ----------------------------------------------------

@pytest.fixture(scope="module")
def chat_server(live_server_factory):
    """Long replies allowed, so that a client leaving mid-reply is seen to stop the model."""
    return live_server_factory({"LLM_MAX_TOKENS": 1000})


def post(server, path: str, body: dict, timeout: float = 60) -> tuple[int, str, str]:
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_health_then_a_completion_from_the_embedded_model(chat_server):
    status, health = chat_server.api("GET", "/api/chat/health")
    assert status == 200 and health["reachable"] is True, health
    assert health["backend"] == "embedded SmolLM2-135M-Instruct.Q4_1.gguf" and health["latency_ms"] >= 0
    status, answer = chat_server.api("POST", "/api/chat/completion", {
        "message": "And what is my name?", "conversation_history": [
            {"role": "user", "content": "Hello, my name is Ann."}, {"role": "assistant", "content": "Hi Ann!"}]})
    assert status == 200 and answer["response"].strip() and answer["model"] == "SmolLM2-135M-Instruct.Q4_1"
    status, models = chat_server.api("GET", "/api/chat/models")
    assert [m["loaded"] for m in models["models"] if m["active"]] == [True]


def test_a_stream_is_deltas_then_done_with_the_whole_reply(chat_server):
    status, kind, body = post(chat_server, "/api/chat/stream", {"message": "Name three colours of the rainbow."})
    assert status == 200 and kind.startswith("text/event-stream")
    got = events(body)
    deltas = [data["delta"] for name, data in got[:-1] if name == "message"]
    assert len(deltas) > 1 and len(deltas) == len(got) - 1
    assert got[-1] == ("done", {"response": "".join(deltas), "model": "SmolLM2-135M-Instruct.Q4_1"})


def test_a_client_that_leaves_mid_stream_stops_the_model(chat_server):
    """Unstopped, this reply takes the model's one thread for its 1000 tokens (about 20 s here)."""
    body = json.dumps({"message": "Write a very long story about a dragon."}).encode()
    with socket.create_connection(("127.0.0.1", chat_server.port), timeout=30) as sock:
        sock.sendall(b"POST /api/chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        seen = b""
        while seen.count(b"data: ") < 3 and (chunk := sock.recv(4096)):
            seen += chunk
    assert seen.startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    status, health = chat_server.api("GET", "/api/chat/health")        # waits for the model's thread
    seconds = time.monotonic() - t0
    assert status == 200 and seconds < 8.0, (seconds, health)


# --- an LLM that does not answer (slow: network timeouts, a stub endpoint) -----------------------------------

@pytest.fixture(scope="module")
def unreachable():
    """A port that was bound and closed again: nothing listens there."""
    return create_app({"TESTING": True, "LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
                       "LLM_TIMEOUT": 2}).test_client()


@pytest.mark.slow
@pytest.mark.parametrize("method,path", [("POST", "/api/chat/completion"), ("POST", "/api/chat/stream"),
                                         ("GET", "/api/chat/health")])
def test_an_unreachable_llm_is_a_503_with_the_reason_in_bounded_time(unreachable, method, path):
    t0 = time.monotonic()
    r = unreachable.open(path, method=method, json={"message": "Hello?"} if method == "POST" else None)
    assert time.monotonic() - t0 < 2 + 3
    assert r.status_code == 503 and r.is_json, r.data
    assert r.json["error"] == "llm_unavailable" and r.json["message"].startswith("The language model is unreachable (")
    if path.endswith("health"):
        assert r.json["reachable"] is False and r.json["backend"].endswith(unreachable.application.config[
            "LLM_BASE_URL"]) and r.json["latency_ms"] < 5000


@pytest.mark.slow
def test_an_embedded_model_that_cannot_load_is_a_503():
    client = create_app({"TESTING": True, "LLM_GGUF": "/nonexistent/model.gguf"}).test_client()
    r = client.post("/api/chat/completion", json={"message": "Hello?"})
    assert r.status_code == 503 and "failed to load" in r.json["message"]
    r = client.get("/api/chat/health")
    assert r.status_code == 503 and r.json["backend"] == "embedded /nonexistent/model.gguf" and r.json["reachable"] is False


class DyingEndpoint(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that streams two pieces of a reply, then drops the connection."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for text in ("Hello", " there"):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "dying",
                     "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        self.close_connection = True                 # no last chunk: the body ends half-way

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def dying():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), DyingEndpoint)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield create_app({"TESTING": True, "LLM_BASE_URL": f"http://127.0.0.1:{httpd.server_port}/v1",
                      "LLM_MODEL": "dying", "LLM_TIMEOUT": 2}).test_client()
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_an_llm_that_dies_mid_stream_is_an_error_event(dying):
    r = dying.post("/api/chat/stream", json={"message": "Hello?"})
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    got = events(r.get_data(as_text=True))
    assert got[:2] == [("message", {"delta": "Hello"}), ("message", {"delta": " there"})]
    assert len(got) == 3 and got[2][0] == "error" and got[2][1]["error"] == "llm_unavailable", got
    assert got[2][1]["message"].startswith("The language model is unreachable")
    r = dying.post("/api/chat/completion", json={"message": "Hello?"})
    assert r.status_code == 503 and r.json["error"] == "llm_unavailable"
