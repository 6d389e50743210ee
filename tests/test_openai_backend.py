"""The openai backend against a real HTTP server on 127.0.0.1: retries, bounded budget, caching, key handling."""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from openai_stub import StubServer

from personalign.lm import generation
from personalign.lm.generation import ChatPrompt, GenerationCache, GenerationError, OpenAIGenerator, Sampling

KEY = "sk-test-personalign-0123456789"


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("PERSONALIGN_TEST_KEY", KEY)
    with StubServer(timeout_sleep=1.5) as stub:
        yield stub


def client(server, cache=None, retries=3, timeout=0.5):
    return OpenAIGenerator(
        "stub-model", server.base_url, "PERSONALIGN_TEST_KEY", cache, timeout, retries, backoff_s=0.01
    )


PROMPTS = [ChatPrompt("Who prefers short answers?"), ChatPrompt("Describe a careful user.", "Be brief.")]
SAMPLING = Sampling(max_new_tokens=20, temperature=0.0)


def test_answers_and_sends_the_key_only_as_a_header(server):
    texts = client(server).generate(PROMPTS, SAMPLING, [1, 2])
    assert all(t.startswith("The user ") for t in texts)
    assert server.auth_headers == [f"Bearer {KEY}"] * 2
    first = server.requests[0]
    assert first["model"] == "stub-model" and first["seed"] == 1 and first["max_tokens"] == 20
    assert first["messages"] == [{"role": "user", "content": "Who prefers short answers?"}]
    assert server.requests[1]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert KEY not in str(server.requests)


@pytest.mark.parametrize("failure", ["429", "500", "timeout", "malformed"])
def test_transient_failures_are_retried(server, failure):
    server.script = [failure, failure]
    texts = client(server, retries=3).generate(PROMPTS[:1], SAMPLING, [1])
    assert texts[0].startswith("The user ")
    assert len(server.requests) == 3


@pytest.mark.parametrize("failure, last", [("500", "HTTP 500"), ("429", "HTTP 429"), ("timeout", "timeout")])
def test_persistent_failure_names_endpoint_and_status_and_keeps_the_cache(server, tmp_path, failure, last):
    cache = GenerationCache(tmp_path / "cache.sqlite")
    gen = client(server, cache, retries=2)
    gen.generate(PROMPTS[:1], SAMPLING, [1])
    server.script = [failure] * 3
    with pytest.raises(GenerationError) as info:
        gen.generate(PROMPTS, SAMPLING, [1, 2])
    message = str(info.value)
    assert server.base_url + "/chat/completions" in message and last in message and "after 3 tries" in message
    assert KEY not in message
    assert len(GenerationCache(tmp_path / "cache.sqlite")) == 1
    calls = len(server.requests)
    assert client(server, GenerationCache(tmp_path / "cache.sqlite")).generate(PROMPTS, SAMPLING, [1, 2])
    assert len(server.requests) == calls + 1  # only the missing item is requested again


def test_client_errors_are_not_retried(server):
    server.script = ["404"]
    with pytest.raises(GenerationError, match="answered HTTP 404; not retried"):
        client(server).generate(PROMPTS[:1], SAMPLING, [1])
    assert len(server.requests) == 1


def test_unreachable_endpoint_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("PERSONALIGN_TEST_KEY", KEY)
    with StubServer() as stub:
        url = stub.base_url
    gen = OpenAIGenerator("m", url, "PERSONALIGN_TEST_KEY", None, 0.5, 1, backoff_s=0.01)
    with pytest.raises(GenerationError, match="connection error"):
        gen.generate(PROMPTS[:1], SAMPLING, [1])


def test_a_partial_assistant_turn_is_refused(server):
    with pytest.raises(ValueError, match="cannot continue a partial assistant turn"):
        client(server).generate([ChatPrompt("x", prefix="Axis:")], SAMPLING, [1])


def test_a_redirect_to_another_host_is_refused_and_never_carries_the_key(monkeypatch):
    """Issue 16.3: two servers on 127.0.0.1; the first answers 302 to the second. The client must not follow it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    monkeypatch.setenv("PERSONALIGN_TEST_KEY", KEY)
    with StubServer() as other:

        class Redirect(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.send_response(302)
                self.send_header("Location", other.base_url + "/chat/completions")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            generator = OpenAIGenerator(
                "stub-model",
                f"http://127.0.0.1:{server.server_address[1]}/v1",
                "PERSONALIGN_TEST_KEY",
                None,
                2.0,
                1,
                backoff_s=0.01,
            )
            with pytest.raises(GenerationError, match="answered HTTP 302 \\(a redirect: not followed"):
                generator.generate(PROMPTS[:1], SAMPLING, [1])
        finally:
            server.shutdown()
            server.server_close()
        assert other.requests == [] and other.auth_headers == []


def test_an_unset_key_variable_stops_before_any_request(monkeypatch):
    monkeypatch.delenv("PERSONALIGN_UNSET_KEY", raising=False)
    with StubServer() as server:
        with pytest.raises(GenerationError, match="variable PERSONALIGN_UNSET_KEY holding the API key is not set"):
            OpenAIGenerator("stub-model", server.base_url, "PERSONALIGN_UNSET_KEY")
        texts = OpenAIGenerator("stub-model", server.base_url, "").generate(PROMPTS[:1], SAMPLING, [1])
        assert texts and server.auth_headers == [None]  # "": an endpoint without a key, no header sent


def test_concurrent_requests_overlap_and_come_back_in_order(monkeypatch):
    monkeypatch.setenv("PERSONALIGN_TEST_KEY", KEY)
    prompts = [ChatPrompt(f"Question {i}: what does user {i} prefer?") for i in range(12)]
    with StubServer(delay=0.2) as stub:
        gen = OpenAIGenerator("stub-model", stub.base_url, "PERSONALIGN_TEST_KEY", None, 5.0, 1, concurrency=4)
        texts = gen.generate(prompts, SAMPLING, list(range(12)))
        assert 2 <= stub.max_in_flight <= 4
    with StubServer() as stub:
        one_at_a_time = OpenAIGenerator("stub-model", stub.base_url, "PERSONALIGN_TEST_KEY", None, 5.0, 1)
        assert one_at_a_time.generate(prompts, SAMPLING, list(range(12))) == texts
        assert stub.max_in_flight == 1


def test_retry_after_is_honoured_in_seconds_and_as_a_date(server, monkeypatch):
    waits = []
    monkeypatch.setattr(generation.time, "sleep", waits.append)
    server.script, server.retry_after = ["429-retry-after"] * 2, "7"
    assert client(server, retries=3).generate(PROMPTS[:1], SAMPLING, [1])[0].startswith("The user ")
    assert waits == [7.0, 7.0]  # the server's wait, not the client's 0.01 s backoff
    gen = client(server)
    date = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    response = httpx.Response(429, headers={"Retry-After": date})
    assert 25 <= gen._wait_s(1, response) <= 30
    assert gen._wait_s(1, httpx.Response(429, headers={"Retry-After": "86400"})) == gen.max_wait_s
    assert gen._wait_s(2, httpx.Response(500)) == 0.02  # no Retry-After: exponential backoff


def test_a_batch_that_fails_keeps_what_it_finished(server, tmp_path):
    cache = GenerationCache(tmp_path / "cache.sqlite")
    prompts = [ChatPrompt(f"Question {i}") for i in range(6)]
    server.script = ["404"]
    gen = OpenAIGenerator("stub-model", server.base_url, "PERSONALIGN_TEST_KEY", cache, 5.0, 1, concurrency=3)
    with pytest.raises(GenerationError, match="HTTP 404"):
        gen.generate(prompts, SAMPLING, list(range(6)))
    assert len(GenerationCache(tmp_path / "cache.sqlite")) == 5  # all but the failed request


def test_the_cache_key_holds_the_endpoint(monkeypatch, tmp_path):
    """Two servers with the same model name never share cached outputs."""
    monkeypatch.setenv("PERSONALIGN_TEST_KEY", KEY)
    cache = GenerationCache(tmp_path / "cache.sqlite")
    with StubServer() as first, StubServer() as second:
        first.replies, second.replies = ["from the first server"], ["from the second server"]
        texts = [
            OpenAIGenerator("stub-model", stub.base_url, "PERSONALIGN_TEST_KEY", cache).generate(
                PROMPTS[:1], SAMPLING, [1]
            )[0]
            for stub in (first, second)
        ]
    assert texts == ["from the first server", "from the second server"]
