"""Thin clients for the OpenAI Batch API and Anthropic Message Batches (half price, up to 24h).

Requests are built and answers read by the same functions the providers use for live
calls (`chat_params`/`message_params`, `to_response`), so a batched judgement is the same
request as a live one. An item that failed comes back as a one-line error string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openai.types.chat import ChatCompletion

from . import retry
from .errors import UsageError
from .providers import anthropic_provider, openai_provider
from .providers.anthropic_provider import AnthropicProvider
from .providers.base import ChatRequest, ChatResponse, Provider
from .providers.openai_provider import OpenAIProvider

Items = Sequence[tuple[str, ChatRequest]]  # (custom_id, request)
Results = dict[str, ChatResponse | str]  # custom_id -> answer, or why it failed


@dataclass(frozen=True)
class BatchStatus:
    id: str
    state: str  # "in_progress" | "ended" (results can be fetched) | "failed" (none will come)
    provider_state: str  # the API's own word: validating, finalizing, canceling, expired, ...
    counts: dict[str, int]  # processing, succeeded, errored (errored includes expired and canceled)

    @property
    def done(self) -> bool:
        return self.state != "in_progress"


async def submit(provider: Provider, items: Items) -> str:
    """Create one batch holding every item; returns its id."""
    if isinstance(provider, OpenAIProvider):
        return await _openai_submit(provider, items)
    return await _anthropic_submit(_anthropic(provider), items)


async def poll(provider: Provider, batch_id: str) -> BatchStatus:
    if isinstance(provider, OpenAIProvider):
        return _openai_status(await provider.client().batches.retrieve(batch_id))
    return _anthropic_status(await _anthropic(provider).client().messages.batches.retrieve(batch_id))


async def results(provider: Provider, batch_id: str) -> Results:
    """Every item the ended batch reports, answered or failed."""
    if isinstance(provider, OpenAIProvider):
        return await _openai_results(provider, batch_id)
    return await _anthropic_results(_anthropic(provider), batch_id)


def _anthropic(provider: Provider) -> AnthropicProvider:
    if not isinstance(provider, AnthropicProvider):
        raise UsageError(f"the {provider.name} judge has no batch API (openai: and anthropic: judges do)")
    return provider


# ---------------------------------------------------------------- OpenAI

_OPENAI_STATES = {"completed": "ended", "expired": "ended", "cancelled": "ended", "failed": "failed"}


async def _openai_submit(provider: OpenAIProvider, items: Items) -> str:
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": openai_provider.chat_params(request),
        }
        for custom_id, request in items
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    client = provider.client()
    upload = await client.files.create(
        file=("rmb-judge-batch.jsonl", data, "application/jsonl"), purpose="batch"
    )
    batch = await client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return batch.id


def _openai_status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    total, succeeded, errored = (counts.total, counts.completed, counts.failed) if counts else (0, 0, 0)
    return BatchStatus(
        id=batch.id,
        state=_OPENAI_STATES.get(batch.status, "in_progress"),
        provider_state=batch.status,
        counts={"processing": total - succeeded - errored, "succeeded": succeeded, "errored": errored},
    )


async def _openai_results(provider: OpenAIProvider, batch_id: str) -> Results:
    client = provider.client()
    batch = await client.batches.retrieve(batch_id)
    found: Results = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            content = await client.files.content(file_id)
            for line in content.text.splitlines():
                if line.strip():
                    item = json.loads(line)
                    found[item["custom_id"]] = _openai_item(item)
    return found


def _openai_item(item: dict[str, Any]) -> ChatResponse | str:
    response, error = item.get("response"), item.get("error")
    if error:
        return f"{error.get('code')}: {error.get('message')}"
    body = response["body"]
    if response["status_code"] != 200:
        return f"HTTP {response['status_code']}: {body.get('error', {}).get('message', body)}"
    try:
        return openai_provider.to_response(ChatCompletion.construct(**body))
    except retry.BrokenAnswer as exc:
        return str(exc)


# ---------------------------------------------------------------- Anthropic


async def _anthropic_submit(provider: AnthropicProvider, items: Items) -> str:
    requests = [
        {"custom_id": custom_id, "params": anthropic_provider.message_params(request)}
        for custom_id, request in items
    ]
    batch = await provider.client().messages.batches.create(requests=requests)
    return batch.id


def _anthropic_status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    return BatchStatus(
        id=batch.id,
        state="ended" if batch.processing_status == "ended" else "in_progress",
        provider_state=batch.processing_status,
        counts={
            "processing": counts.processing,
            "succeeded": counts.succeeded,
            "errored": counts.errored + counts.expired + counts.canceled,
        },
    )


async def _anthropic_results(provider: AnthropicProvider, batch_id: str) -> Results:
    found: Results = {}
    async for item in await provider.client().messages.batches.results(batch_id):
        result = item.result
        if result.type == "succeeded":
            try:
                found[item.custom_id] = anthropic_provider.to_response(result.message)
            except retry.BrokenAnswer as exc:
                found[item.custom_id] = str(exc)
        elif result.type == "errored":
            found[item.custom_id] = f"{result.error.error.type}: {result.error.error.message}"
        else:
            found[item.custom_id] = result.type  # "expired" | "canceled"
    return found
