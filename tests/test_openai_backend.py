"""The openai backend against a real HTTP server on 127.0.0.1: retries, bounded budget, caching, key handling."""

from __future__ import annotations

import pytest
from openai_stub import StubServer

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
