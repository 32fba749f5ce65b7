"""A real OpenAI-compatible HTTP server for tests, bound to 127.0.0.1 only.

``POST /v1/chat/completions`` answers deterministically from the user message: a fenced Python
block whose body lists the prompt's words in order, with usage = word counts. Faults are
injected from a queue (``server.faults``): each request pops one entry, ``"429"``, ``"500"``,
``"slow"`` (sleeps ``slow_s`` before answering, longer than the client's timeout) or ``"ok"``.

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


class StubServer:
    def __init__(self, max_requests: int = 500, lifetime_s: float = 60.0, slow_s: float = 1.0):
        self.faults: list[str] = []
        self.requests: list[dict] = []  # bodies of every request received, faulty ones too
        self.max_requests = max_requests
        self.slow_s = slow_s
        self.usage = True
        self.delay_s = 0.0  # added to every answer, to observe concurrency
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
                if not self.path.endswith("/chat/completions"):
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
                with server._lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    time.sleep(server.slow_s if fault == "slow" else server.delay_s)
                finally:
                    with server._lock:
                        server.inflight -= 1
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
