"""A real OpenAI-compatible HTTP server for tests, bound to 127.0.0.1 only.

``POST /v1/chat/completions`` answers deterministically from the user message: a fenced Python
block whose body lists the prompt's words in order, with usage = word counts.

``POST /v1/completions`` continues each prompt (``prompt`` a string or a list of strings) with
:func:`stub_completion`, cut to ``max_tokens`` words, one choice per prompt with its ``index``;
usage = word counts. ``server.accept_lists = False`` answers 400 to a list of several prompts
(a server without batching); ``server.reverse_choices = True`` returns the choices in reverse
order (their indexes still right).

Faults are injected from a queue (``server.faults``): each request pops one entry, ``"429"``,
``"500"``, ``"400"``, ``"slow"`` (sleeps ``slow_s`` before answering, longer than the client's
timeout) or ``"ok"``; for completions also ``"no_choices"`` (no ``choices`` field),
``"bad_index"`` (every choice has index 0) and ``"no_text"`` (the last choice has no text).

Bounded: the server refuses (503, not retried by tests that count) after ``max_requests``, and a
watchdog shuts it down after ``lifetime_s`` whatever the test does.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def stub_answer(prompt: str) -> str:
    words = [w.strip(".,;:!?\"'()") for w in prompt.split()]
    body = " + ".join(repr(w) for w in words if w) or "None"
    return f"Here is the code:\n```python\ndef solution():\n    return {body}\n```\nDone."


def stub_completion(prompt: str, max_tokens: int | None = None) -> str:
    """The completions route's continuation: the prompt's words reversed, at most ``max_tokens``."""
    words = prompt.split()[::-1][:max_tokens]
    return "\n    return " + " ".join(words)


def stub_backend(cls, server: StubServer, tmp_path, **kw):
    """A ``cls`` backend (chat or completions) on ``server`` for model ``stub-model``, with a cache
    file in ``tmp_path``, fast backoff and a short timeout unless given."""
    from common.generation_cache import GenerationCache
    kw.setdefault("cache", GenerationCache(tmp_path / "cache.sqlite"))
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 5.0)
    return cls("stub-model", base_url=server.base_url, api_key="test-key", **kw)


class StubServer:
    def __init__(self, max_requests: int = 500, lifetime_s: float = 60.0, slow_s: float = 1.0):
        self.faults: list[str] = []
        self.requests: list[dict] = []  # bodies of every request received, faulty ones too
        self.max_requests = max_requests
        self.slow_s = slow_s
        self.usage = True
        self.delay_s = 0.0  # added to every answer, to observe concurrency
        self.accept_lists = True
        self.reverse_choices = False
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up: expected for "slow"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    n = len(server.requests)
                    fault = server.faults.pop(0) if server.faults else "ok"
                route = ("chat" if self.path.endswith("/chat/completions")
                         else "completions" if self.path.endswith("/completions") else None)
                if route is None:
                    return self._send(404, {"error": {"message": "not found"}})
                if n > server.max_requests:
                    return self._send(503, {"error": {"message": "stub request limit reached"}})
                if fault == "429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate"}},
                                      {"retry-after": "0"})
                if fault == "500":
                    return self._send(500, {"error": {"message": "boom", "type": "server"}})
                if fault == "400":
                    return self._send(400, {"error": {"message": "bad request", "type": "invalid"}})
                prompts = body.get("prompt")
                if route == "completions" and isinstance(prompts, list) and len(prompts) > 1 \
                        and not server.accept_lists:
                    return self._send(400, {"error": {"message": "prompt must be a string",
                                                      "type": "invalid"}})
                with server._lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    time.sleep(server.slow_s if fault == "slow" else server.delay_s)
                finally:
                    with server._lock:
                        server.inflight -= 1
                if route == "completions":
                    return self._send(200, server._completions(body, n, fault))
                prompt = next((m["content"] for m in reversed(body.get("messages", []))
                               if m.get("role") == "user"), "")
                answer = stub_answer(prompt)
                payload = {
                    "id": f"stub-{n}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                }
                if server.usage:
                    sent = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                    payload["usage"] = {"prompt_tokens": sent, "completion_tokens": len(answer.split()),
                                        "total_tokens": sent + len(answer.split())}
                return self._send(200, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._watchdog = threading.Timer(lifetime_s, self.close)
        self._watchdog.daemon = True
        self._closed = False

    def _completions(self, body: dict, n: int, fault: str) -> dict:
        prompts = body.get("prompt", "")
        prompts = prompts if isinstance(prompts, list) else [prompts]
        texts = [stub_completion(str(p), body.get("max_tokens")) for p in prompts]
        choices = [{"index": i, "text": t, "finish_reason": "length", "logprobs": None}
                   for i, t in enumerate(texts)]
        if self.reverse_choices:
            choices.reverse()
        if fault == "bad_index":
            for c in choices:
                c["index"] = 0
        if fault == "no_text":
            del choices[-1]["text"]
        payload = {"id": f"stub-{n}", "object": "text_completion", "created": 0,
                   "model": body.get("model", "stub"), "choices": choices}
        if fault == "no_choices":
            del payload["choices"]
        if self.usage:
            sent = sum(len(str(p).split()) for p in prompts)
            got = sum(len(t.split()) for t in texts)
            payload["usage"] = {"prompt_tokens": sent, "completion_tokens": got, "total_tokens": sent + got}
        return payload

    def start(self) -> StubServer:
        self._thread.start()
        self._watchdog.start()
        return self

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def completed(self) -> int:
        return len(self.requests)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
