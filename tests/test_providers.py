"""The OpenAI and Anthropic providers, driven through the real SDK clients against FakeAPI."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest
from fake_api import FAKE_KEY, FakeAPI, Fault, Reply, fake_api, fake_api_thread, label_judge  # noqa: F401

from rmb_judge.errors import FatalProviderError
from rmb_judge.providers.anthropic_provider import AnthropicProvider
from rmb_judge.providers.base import ChatRequest
from rmb_judge.providers.mock import MockProvider, approx_tokens, hash_preference
from rmb_judge.providers.openai_provider import OpenAIProvider
from rmb_judge.records import Answer, Message, Record
from rmb_judge.retry import BrokenAnswer, ErrorKind

Hosted = OpenAIProvider | AnthropicProvider
SDKS = {"openai": openai, "anthropic": anthropic}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-test"}
SYSTEM = "Judge fairly."
PAIR_PROMPT = """[User Question]
{question}

[The Start of Assistant A's Answer]
{a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{b}
[The End of Assistant B's Answer]"""


def pair_request(a: str, b: str, model: str, question: str = "Name a colour.", **kw) -> ChatRequest:
    prompt = PAIR_PROMPT.format(question=question, a=a, b=b)
    return ChatRequest(model, (("system", SYSTEM), ("user", prompt)), **kw)


def make_provider(wire: str, api: FakeAPI, model: str | None = None) -> Hosted:
    model = model or MODELS[wire]
    if wire == "openai":
        return OpenAIProvider(model, base_url=api.openai_url, api_key=FAKE_KEY)
    return AnthropicProvider(model, base_url=api.anthropic_url, api_key=FAKE_KEY)


@pytest.fixture(params=["openai", "anthropic"])
async def judge(request: pytest.FixtureRequest, fake_api: FakeAPI) -> AsyncIterator[Hosted]:
    provider = make_provider(request.param, fake_api)
    yield provider
    await provider.aclose()


def ask(judge: Hosted, **kw) -> ChatRequest:
    return pair_request("Red.", "Blue, a primary colour.", judge.model, **kw)


# ---------------------------------------------------------------- answers


async def test_answer_usage_and_key(judge: Hosted, fake_api: FakeAPI) -> None:
    request = ask(judge)
    response = await judge.complete(request, timeout=10)

    expected = hash_preference("Red.", "Blue, a primary colour.")
    assert response.text == f"[[{expected}]]"
    prompt = "\n\n".join(content for _, content in request.messages)
    assert response.input_tokens == approx_tokens(prompt)
    assert response.output_tokens == approx_tokens(response.text)
    assert (response.finish_reason, response.refusal, response.model) == ("stop", False, judge.model)
    [call] = fake_api.calls(judge.name)
    sent = call.headers.get("authorization", "") + call.headers.get("x-api-key", "")
    assert FAKE_KEY in sent  # the server sees the key, so tests can check it goes nowhere else


async def test_openai_request_body(fake_api: FakeAPI) -> None:
    provider = make_provider("openai", fake_api)
    await provider.complete(ask(provider, max_tokens=77, temperature=0.5), timeout=10)
    await provider.complete(ask(provider, json_mode=True, temperature=None), timeout=10)
    await provider.aclose()

    plain, json_mode = (c.body for c in fake_api.calls())
    assert [m["role"] for m in plain["messages"]] == ["system", "user"]
    assert (plain["max_tokens"], plain["temperature"]) == (77, 0.5)
    assert "response_format" not in plain
    assert json_mode["response_format"] == {"type": "json_object"}
    assert "temperature" not in json_mode


@pytest.mark.parametrize("model", ["o3-mini", "o1", "gpt-5", "gpt-5.1-mini", "openai/o4-mini"])
async def test_openai_reasoning_models_use_max_completion_tokens(fake_api: FakeAPI, model: str) -> None:
    provider = make_provider("openai", fake_api, model)
    await provider.complete(ask(provider, max_tokens=300, temperature=0.0), timeout=10)
    await provider.aclose()

    [call] = fake_api.calls()
    assert call.body["max_completion_tokens"] == 300
    assert "max_tokens" not in call.body and "temperature" not in call.body


async def test_anthropic_request_body(fake_api: FakeAPI) -> None:
    provider = make_provider("anthropic", fake_api)
    # Temperature and JSON mode are dropped: the fake, like API version 2026-10-21, would 400 on temperature.
    request = ask(provider, max_tokens=77, temperature=0.7, json_mode=True)
    response = await provider.complete(request, timeout=10)
    await provider.aclose()

    [call] = fake_api.calls()
    assert call.body["system"] == SYSTEM
    assert [m["role"] for m in call.body["messages"]] == ["user"]
    assert call.body["max_tokens"] == 77
    assert set(call.body) == {"model", "max_tokens", "messages", "system"}
    assert response.text.startswith("[[")


async def test_openai_refusal_signals(fake_api: FakeAPI) -> None:
    provider = make_provider("openai", fake_api)
    fake_api.schedule(Reply("I can't help with that.", refusal=True), Reply("[[A]]", finish="content_filter"))
    refused = await provider.complete(ask(provider), timeout=10)
    filtered = await provider.complete(ask(provider), timeout=10)
    await provider.aclose()

    assert (refused.refusal, refused.finish_reason) == (True, "refusal")
    assert refused.text == "I can't help with that."
    assert (filtered.refusal, filtered.finish_reason, filtered.text) == (True, "content_filter", "[[A]]")


async def test_anthropic_refusal_signal(fake_api: FakeAPI) -> None:
    provider = make_provider("anthropic", fake_api)
    fake_api.schedule(Reply("I can't help with that.", refusal=True))
    response = await provider.complete(ask(provider), timeout=10)
    await provider.aclose()

    assert (response.refusal, response.finish_reason) == (True, "refusal")
    assert response.text == "I can't help with that."


async def test_truncation(judge: Hosted, fake_api: FakeAPI) -> None:
    fake_api.schedule(Reply("Assistant A is", finish="length"))
    response = await judge.complete(ask(judge), timeout=10)
    assert (response.text, response.finish_reason, response.truncated, response.refusal) == (
        "Assistant A is", "length", True, False,
    )


async def test_thinking_is_not_part_of_the_answer(judge: Hosted, fake_api: FakeAPI) -> None:
    fake_api.schedule(Reply("[[B]]", thinking="A is shorter, but [[A]] would be wrong."))
    response = await judge.complete(ask(judge), timeout=10)
    assert response.text == "[[B]]"


# ---------------------------------------------------------------- failures surface unchanged, once


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, "RateLimitError"),
        (500, "InternalServerError"),
        (503, "InternalServerError"),
        (529, "InternalServerError"),
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
    ],
)
async def test_http_errors_raise_the_sdk_exception_without_retrying(
    judge: Hosted, fake_api: FakeAPI, status: int, error: str
) -> None:
    fake_api.schedule(Fault.http(status, retry_after=7, retry_after_ms=7000))
    with pytest.raises(getattr(SDKS[judge.name], error)) as caught:
        await judge.complete(ask(judge), timeout=10)

    assert caught.value.status_code == status
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["retry-after-ms"] == "7000"
    assert len(fake_api.calls()) == 1  # max_retries=0: the engine, not the SDK, retries


async def test_anthropic_overloaded(fake_api: FakeAPI) -> None:
    provider = make_provider("anthropic", fake_api)
    fake_api.schedule(Fault.http(529))
    with pytest.raises(anthropic.OverloadedError):
        await provider.complete(ask(provider), timeout=10)
    await provider.aclose()


async def test_unknown_model_error_names_the_model(judge: Hosted, fake_api: FakeAPI) -> None:
    fake_api.schedule(Fault.http(404))
    with pytest.raises(SDKS[judge.name].NotFoundError, match=judge.model):
        await judge.complete(ask(judge), timeout=10)


async def test_hang_times_out(judge: Hosted, fake_api: FakeAPI) -> None:
    fake_api.schedule(Fault.hang(30))
    started = time.monotonic()
    with pytest.raises(SDKS[judge.name].APITimeoutError):
        await judge.complete(ask(judge), timeout=0.3)
    assert time.monotonic() - started < 5
    assert len(fake_api.calls()) == 1


async def test_malformed_bodies(judge: Hosted, fake_api: FakeAPI) -> None:
    """A body cut off, and a proxy's HTML page: no answer, retried like a 5xx; and JSON of
    another shape is no answer either."""
    fake_api.schedule(Fault.invalid_json(), Fault.garbage())
    for _ in range(2):
        with pytest.raises(BrokenAnswer, match="not JSON") as caught:
            await judge.complete(ask(judge), timeout=10)
        assert judge.classify(caught.value) is ErrorKind.TRANSIENT
    wire = sys.modules[type(judge).__module__]
    for other in ({"error": "upstream"}, [], {"choices": [{"message": {"content": 3}}]},
                  {"type": "message", "content": [{"type": "text", "text": ["x"]}]}):
        with pytest.raises(BrokenAnswer, match="not a"):
            wire.to_response(other)


async def test_wrong_key_gets_401(judge: Hosted, fake_api: FakeAPI) -> None:
    fake_api.required_key = "sk-the-right-one"
    with pytest.raises(SDKS[judge.name].AuthenticationError) as caught:
        await judge.complete(ask(judge), timeout=10)
    assert FAKE_KEY not in str(caught.value)  # like the real API, the echo is masked


# ---------------------------------------------------------------- keys and URLs from the environment


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ANTHROPIC_PROFILE", raising=False)
    monkeypatch.delenv("ANTHROPIC_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/anthropic profile either


@pytest.mark.parametrize(
    ("provider_class", "variable"),
    [(OpenAIProvider, "OPENAI_API_KEY"), (AnthropicProvider, "ANTHROPIC_API_KEY")],
)
async def test_missing_key_fails_on_first_use_naming_the_variable(
    no_credentials: None, fake_api: FakeAPI, provider_class: type, variable: str
) -> None:
    provider = provider_class("some-model", base_url=fake_api.url)  # constructing needs no key (--offline)
    with pytest.raises(FatalProviderError, match=variable) as caught:
        await provider.complete(ChatRequest("some-model", (("user", "hi"),)), timeout=10)
    assert "\n" not in str(caught.value)
    assert fake_api.requests == []
    await provider.aclose()


@pytest.mark.parametrize("provider_class", [OpenAIProvider, AnthropicProvider])
async def test_base_url_and_key_from_the_sdk_environment(
    no_credentials: None, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch, provider_class: type
) -> None:
    for name, value in fake_api.env().items():
        monkeypatch.setenv(name, value)
    provider = provider_class("some-model")
    response = await provider.complete(ChatRequest("some-model", (("user", "hi"),)), timeout=10)
    await provider.aclose()
    assert response.text in ("[[A]]", "[[B]]")
    assert len(fake_api.calls(provider.name)) == 1


# ---------------------------------------------------------------- the mock judge


async def test_mock_provider_is_deterministic_and_offline() -> None:
    mock = MockProvider()
    ab = pair_request("Red.", "Blue, a primary colour.", "mock")
    ba = pair_request("Blue, a primary colour.", "Red.", "mock")
    first, again, swapped = [await mock.complete(r, timeout=1) for r in (ab, ab, ba)]

    assert (mock.name, mock.simulated) == ("mock", True)
    assert first == again
    assert {first.text, swapped.text} == {"[[A]]", "[[B]]"}  # prefers the same answer in either position
    assert first.input_tokens > 50 and first.output_tokens >= 1


@pytest.mark.parametrize(
    ("marker", "pattern"),
    [("[[A>>B]]", r"^\[\[(A>B|B>A)\]\]$"), ('"winner"', r'"winner": "[AB]"')],
)
async def test_mock_answers_in_the_style_the_prompt_asks_for(marker: str, pattern: str) -> None:
    prompt = PAIR_PROMPT.format(question="q", a="x", b="y")
    request = ChatRequest("mock", (("system", f"Answer like {marker}."), ("user", prompt)))
    response = await MockProvider().complete(request, timeout=1)
    assert response.text.count("\n") == 0
    assert re.search(pattern, response.text)


async def test_mock_rates_a_single_answer() -> None:
    prompt = "[Question]\nq\n\n[The Start of Assistant's Answer]\nan answer\n[The End of Assistant's Answer]"
    response = await MockProvider().complete(ChatRequest("mock", (("user", prompt),)), timeout=1)
    rating = int(response.text.removeprefix("Rating: [[").removesuffix("]]"))
    assert 1 <= rating <= 10


# ---------------------------------------------------------------- the fake server itself


async def _statuses(api: FakeAPI, prompts: list[str]) -> list[int]:
    provider = make_provider("openai", api)
    statuses = []
    for prompt in prompts:
        try:
            await provider.complete(ChatRequest("gpt-4o-mini", (("user", prompt),)), timeout=10)
            statuses.append(200)
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)
    await provider.aclose()
    return statuses


async def test_fault_rate_is_seeded_and_a_retry_draws_afresh() -> None:
    prompts = [f"question {i}" for i in range(60)]
    runs = []
    for seed in (1, 1, 2):
        async with FakeAPI(fault_rate=0.3, seed=seed) as api:
            runs.append(await _statuses(api, prompts))
            again = await _statuses(api, prompts)  # every prompt's second attempt
    assert runs[0] == runs[1] != runs[2]
    assert set(runs[0]) == {200, 429, 500, 503}
    assert 8 <= sum(s != 200 for s in runs[0]) <= 30
    assert again != runs[0]


async def test_capacity_rpm_answers_429_with_retry_after_ms() -> None:
    async with FakeAPI(capacity_rpm=600) as api:  # 10 per second, a burst of 10
        provider = make_provider("openai", api)
        request = ChatRequest("gpt-4o-mini", (("user", "hi"),))
        calls = (provider.complete(request, timeout=10) for _ in range(30))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        await provider.aclose()
    limited = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    # a burst of 10 is admitted; how many of the other 20 find a refilled slot depends on
    # how fast the 30 calls arrive (10 per second refill), so only bound it loosely
    assert 1 <= len(limited) <= 20
    assert all(int(o.response.headers["retry-after-ms"]) > 0 for o in limited)


def test_label_judge_agrees_with_the_labels() -> None:
    good, bad = "The good answer.", "The bad answer."
    record = Record(
        "pairwise", "helpfulness", "pairwise_helpfulness", "Pairwise_set/Helpfulness/x", "uid-1", (Message("user", "q"),),
        (Answer("m1", good),), (Answer("m2", bad),), "x.json", 0,
    )
    respond = label_judge([record])
    for a, b, verdict in [(good, bad, "A"), (bad, good, "B")]:
        body = {"messages": [{"role": "user", "content": PAIR_PROMPT.format(question="q", a=a, b=b)}]}
        assert respond(body, "openai").text == f"[[{verdict}]]"


def test_thread_mode_serves_sync_callers(fake_api_thread: FakeAPI) -> None:
    async def once() -> str:
        provider = make_provider("anthropic", fake_api_thread)
        try:
            return (await provider.complete(ChatRequest("claude-x", (("user", "hi"),)), timeout=10)).text
        finally:
            await provider.aclose()

    assert asyncio.run(once()) in ("[[A]]", "[[B]]")
    assert len(fake_api_thread.calls("anthropic")) == 1


async def test_runs_as_a_process() -> None:
    script = Path(__file__).with_name("fake_api.py")
    command = [sys.executable, str(script), "--port", "0", "--judge", "first"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            url = await asyncio.to_thread(server.stdout.readline)
            # The root URL serves the OpenAI routes too, so one URL fits both SDKs.
            provider = OpenAIProvider("gpt-4o-mini", base_url=url.strip(), api_key=FAKE_KEY)
            response = await provider.complete(pair_request("x", "y", "gpt-4o-mini"), timeout=10)
            await provider.aclose()
        finally:
            server.terminate()
    assert response.text == "[[A]]"
