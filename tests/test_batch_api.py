"""The providers' batch APIs against FakeAPI's OpenAI Batches and Anthropic Message Batches."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fake_api import FAKE_KEY, FakeAPI, Fault, Reply, fake_api  # noqa: F401

from rmb_judge.providers.anthropic_provider import AnthropicProvider, message_params
from rmb_judge.providers.base import ChatRequest, ChatResponse
from rmb_judge.providers.mock import MockProvider
from rmb_judge.providers.openai_provider import OpenAIProvider, chat_params

Provider = OpenAIProvider | AnthropicProvider
TAG = "rmb-judge-test"


@pytest.fixture(params=["openai", "anthropic"])
async def judge(request: pytest.FixtureRequest, fake_api: FakeAPI) -> AsyncIterator[Provider]:
    if request.param == "openai":
        provider: Provider = OpenAIProvider("gpt-4o-mini", base_url=fake_api.openai_url, api_key=FAKE_KEY)
    else:
        provider = AnthropicProvider("claude-test", base_url=fake_api.anthropic_url, api_key=FAKE_KEY)
    yield provider
    await provider.aclose()


def items(judge: Provider, n: int) -> list[tuple[str, ChatRequest]]:
    messages = [(("system", "Judge."), ("user", f"question {i}")) for i in range(n)]
    return [(f"item-{i}", ChatRequest(judge.model, m, max_tokens=50)) for i, m in enumerate(messages)]


def sent_bodies(api: FakeAPI, judge: Provider, batch_id: str) -> dict[str, dict]:
    """What the server received for each item: the uploaded JSONL lines, or the batch's params."""
    if judge.name == "openai":
        lines = [json.loads(line) for line in api.files[api.batches[batch_id].input_file_id].splitlines()]
        return {line["custom_id"]: line["body"] for line in lines}
    return api.batches[batch_id].bodies


async def test_submit_poll_results_with_partial_failure(judge: Provider, fake_api: FakeAPI) -> None:
    fake_api.schedule(None, Fault.http(400), Fault.expired(), Reply("[[B]]", finish="length"))
    batch = items(judge, 4)
    batch_id = await judge.submit_batch(batch, TAG, 10)

    build = chat_params if judge.name == "openai" else message_params
    assert sent_bodies(fake_api, judge, batch_id) == {cid: build(request) for cid, request in batch}
    assert fake_api.batches_created == 1
    assert fake_api.calls() == []  # nothing went through the live endpoint

    running = await judge.poll_batch(batch_id, 10)
    assert (running.state, running.done, running.counts["processing"]) == ("in_progress", False, 4)
    ended = await judge.poll_batch(batch_id, 10)
    assert (ended.state, ended.done) == ("ended", True)
    assert ended.counts == {"processing": 0, "succeeded": 2, "errored": 2}

    found = await judge.batch_results(batch_id, 10)
    assert set(found) == {"item-0", "item-1", "item-2", "item-3"}
    first, truncated = found["item-0"], found["item-3"]
    assert isinstance(first, ChatResponse) and first.text in ("[[A]]", "[[B]]")
    assert first.input_tokens > 0 and first.finish_reason == "stop"
    assert isinstance(truncated, ChatResponse) and (truncated.text, truncated.truncated) == ("[[B]]", True)
    assert found["item-1"] in ("HTTP 400: Invalid request.", "invalid_request_error: Invalid request.")
    assert found["item-2"] in ("batch_expired: This request was not executed: batch_expired.", "expired")
    assert fake_api.batches_created == 1


async def test_batch_ends_after_configured_seconds(judge: Provider, fake_api: FakeAPI) -> None:
    fake_api.batch_seconds = 60.0
    batch_id = await judge.submit_batch(items(judge, 2), TAG, 10)
    assert (await judge.poll_batch(batch_id, 10)).state == "in_progress"
    fake_api.age_batches(59.0)
    assert (await judge.poll_batch(batch_id, 10)).state == "in_progress"
    fake_api.age_batches(1.0)
    assert (await judge.poll_batch(batch_id, 10)).counts == {"processing": 0, "succeeded": 2, "errored": 0}


async def test_mock_has_no_batch_api() -> None:
    assert not MockProvider.has_batch_api and OpenAIProvider.has_batch_api and AnthropicProvider.has_batch_api
    with pytest.raises(NotImplementedError, match="mock"):
        await MockProvider().submit_batch([("x", ChatRequest("mock", (("user", "hi"),)))], TAG, 10)
