"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for tests: real sockets, scripted failures."""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LABEL_FIELD = "Output (a) is better than Output (b)"  # WikiPersona G.4's answer field (lm.judge.LABEL_KEY_G4)


class StubServer:
    """POST /v1/chat/completions answers deterministically from the request; `script` holds failures to serve
    first, one per request: "429", "429-retry-after" (with `retry_after` as its Retry-After header), "500",
    "timeout" (sleeps past the client's timeout), "malformed"; `replies` holds message texts to answer with, one per
    successful request, before the deterministic default. `delay` holds every request that long, so concurrent
    requests overlap; `max_in_flight` is the most requests it held at once, `answered` counts the well-formed
    answers sent per request (messages and seed)."""

    def __init__(self, timeout_sleep: float = 1.5, delay: float = 0.0):
        self.script: list[str] = []
        self.replies: list[str] = []
        self.requests: list[dict] = []
        self.auth_headers: list[str | None] = []
        self.timeout_sleep = timeout_sleep
        self.delay = delay
        self.retry_after = "0"
        self.judge_verdicts = False
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.answered: collections.Counter[str] = collections.Counter()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                with stub.lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    if stub.delay:
                        time.sleep(stub.delay)
                    self.serve()
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def serve(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(body)
                    stub.auth_headers.append(self.headers.get("Authorization"))
                    action = stub.script.pop(0) if stub.script else "ok"
                if action in {"429", "429-retry-after", "500", "404"}:
                    self.send_response(int(action[:3]))
                    if action == "429-retry-after":
                        self.send_header("Retry-After", stub.retry_after)
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted"}')
                    return
                if action == "timeout":
                    time.sleep(stub.timeout_sleep)
                if action == "malformed":
                    payload = b"{not json"
                else:
                    with stub.lock:
                        reply = stub.replies.pop(0) if stub.replies else stub.verdict_reply(body)
                    payload = json.dumps(stub.answer(body, reply)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if action == "ok":
                    with stub.lock:
                        stub.answered[json.dumps([body["messages"], body["seed"]])] += 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verdict_reply(self, body: dict) -> str | None:
        """With `judge_verdicts` on: a well-formed judge answer decided by a hash of the request — a G.4 label (JSON,
        true or false) when the request asks for one, else a Prometheus verdict (A or B)."""
        if not self.judge_verdicts:
            return None
        digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).digest()
        if any(LABEL_FIELD in m["content"] for m in body["messages"]):
            return json.dumps({LABEL_FIELD: bool(digest[0] % 2)})
        return f"Feedback: compared. [RESULT] {'AB'[digest[0] % 2]}"

    @staticmethod
    def answer(body: dict, reply: str | None = None) -> dict:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
        text = f"The user {digest} values careful, well-reasoned answers." if reply is None else reply
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}], "model": body["model"]}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
