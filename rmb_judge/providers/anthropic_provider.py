"""Anthropic Messages through the official SDK.

`message_params` builds the request body for both a live call and a Message Batches item,
and `to_response` reads a message from either.
"""

from __future__ import annotations

import os
from typing import Any

import anthropic
from anthropic.types import Message

from .. import endpoints, retry
from ..errors import FatalProviderError
from .base import ChatRequest, ChatResponse

# Timeouts, dropped connections and bodies the SDK could not read (APITimeoutError is an
# APIConnectionError).
TRANSIENT = (anthropic.APIConnectionError, anthropic.APIResponseValidationError)

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "refusal",
}


def message_params(request: ChatRequest) -> dict[str, Any]:
    """The Messages body for `request`: system messages go to `system=`.

    No temperature: API version 2026-10-21 (what SDK 2.x sends) rejects any sampling
    parameter with a 400, and the SDK no longer accepts one, so Claude samples at its
    default. JSON mode has no native switch; the prompt asks for JSON and the text is
    returned as is.
    """
    system = "\n\n".join(content for role, content in request.messages if role == "system")
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [
            {"role": role, "content": content} for role, content in request.messages if role != "system"
        ],
    }
    if system:
        params["system"] = system
    return params


def to_response(message: Any) -> ChatResponse:
    """Our view of a message: text blocks joined (a block whose text is null counts as
    empty), thinking blocks left out. BrokenAnswer when the body is not a message (a
    proxy's error page) or holds no answer: no text, no refusal, not cut off by the limit."""
    content = getattr(message, "content", None)
    if not isinstance(message, Message) or not isinstance(content, list):
        raise retry.BrokenAnswer("the response body is not a message")
    stop = getattr(message, "stop_reason", None)
    usage = getattr(message, "usage", None)
    counted = usage is not None and isinstance(getattr(usage, "input_tokens", None), int)
    response = ChatResponse(
        text="".join(
            getattr(block, "text", None) or "" for block in content if getattr(block, "type", None) == "text"
        ),
        input_tokens=usage.input_tokens if counted else 0,
        output_tokens=(getattr(usage, "output_tokens", 0) or 0) if counted else 0,
        model=getattr(message, "model", None) or "",
        finish_reason=_FINISH.get(stop, stop) if stop else None,
        refusal=stop == "refusal",
        usage_reported=counted,
    )
    if not response.text and not response.refusal and response.finish_reason != "length":
        raise retry.BrokenAnswer(f"an empty answer (no text in content, stop_reason {stop})", response)
    return response


class AnthropicProvider:
    """`--judge anthropic:MODEL`. The SDK client is made on first use, so `--offline` needs no key."""

    name = "anthropic"
    simulated = False

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None) -> None:
        self.model = model
        self.base_url = base_url  # None: ANTHROPIC_BASE_URL, else api.anthropic.com
        self._api_key = api_key  # None: ANTHROPIC_API_KEY or the SDK's other credential sources
        self._client: anthropic.AsyncAnthropic | None = None

    @property
    def endpoints(self) -> tuple[str, ...]:
        url = self.base_url or os.environ.get("ANTHROPIC_BASE_URL") or endpoints.OFFICIAL["anthropic"]
        return (endpoints.normalize(url),)

    def prepare(self) -> None:
        self.client()

    def classify(self, exc: BaseException) -> retry.ErrorKind:
        return retry.sort_error(exc, TRANSIENT)

    def client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            missing = f"--judge anthropic:{self.model} needs ANTHROPIC_API_KEY, which is not set"
            try:
                client = anthropic.AsyncAnthropic(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    max_retries=0,  # the engine retries, and counts each attempt
                    http_client=anthropic.DefaultAioHttpClient(),
                )
            except anthropic.CredentialsError as exc:  # a broken ANTHROPIC_PROFILE / config file
                raise FatalProviderError(f"{missing} and {exc}") from None
            if client.api_key is None and client.auth_token is None and client.credentials is None:
                raise FatalProviderError(missing)
            self._client = client
        return self._client

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        create = self.client().messages.with_raw_response.create
        raw = await create(**message_params(request), timeout=timeout)
        response = to_response(await raw.parse())  # invalid JSON: json.JSONDecodeError, as the SDK does
        response.endpoint = self.endpoints[0]
        return response

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
