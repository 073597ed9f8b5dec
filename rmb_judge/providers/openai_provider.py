"""OpenAI Chat Completions, and any OpenAI-compatible server, through the official SDK.

`chat_params` builds the request body for both a live call and a Batch API line, and
`to_response` reads a completion from either, so the two paths cannot drift apart.
"""

from __future__ import annotations

import os
import re
from typing import Any

import openai
from openai._constants import RAW_RESPONSE_HEADER  # what with_raw_response sets; tests cover it
from openai.types.chat import ChatCompletion

from .. import endpoints, retry
from ..errors import FatalProviderError
from .base import ChatRequest, ChatResponse

# Timeouts, dropped connections and bodies the SDK could not read (APITimeoutError is an
# APIConnectionError).
TRANSIENT = (openai.APIConnectionError, openai.APIResponseValidationError)

# o1, o3, o4-mini, gpt-5, gpt-5.1-mini ...: no temperature, and max_completion_tokens.
_REASONING = re.compile(r"^(o\d|gpt-5)")


def is_reasoning_model(model: str) -> bool:
    return bool(_REASONING.match(model.rsplit("/", 1)[-1]))


def chat_params(request: ChatRequest) -> dict[str, Any]:
    """The Chat Completions body for `request`."""
    params: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": role, "content": content} for role, content in request.messages],
    }
    if is_reasoning_model(request.model):
        params["max_completion_tokens"] = request.max_tokens  # reasoning tokens count too
    else:
        params["max_tokens"] = request.max_tokens  # what OpenAI-compatible servers all accept
        if request.temperature is not None:
            params["temperature"] = request.temperature
    if request.json_mode:
        params["response_format"] = {"type": "json_object"}
    return params


def to_response(completion: Any) -> ChatResponse:
    """Our view of a completion. BrokenAnswer when the body is not one (a proxy's error
    page) or holds no answer: no text, no refusal and not cut off by the token limit."""
    choices = getattr(completion, "choices", None)
    message = getattr(choices[0], "message", None) if choices else None
    if not isinstance(completion, ChatCompletion) or message is None:
        raise retry.BrokenAnswer("the response body is not a chat completion")
    finish = choices[0].finish_reason
    usage = completion.usage
    counted = usage is not None and isinstance(usage.prompt_tokens, int)
    response = ChatResponse(
        text=message.content or message.refusal or "",
        input_tokens=usage.prompt_tokens if counted else 0,
        output_tokens=(usage.completion_tokens or 0) if counted else 0,
        model=completion.model or "",
        finish_reason="refusal" if message.refusal else finish,
        refusal=bool(message.refusal) or finish == "content_filter",
        usage_reported=counted,
    )
    if not response.text and not response.refusal and finish != "length":
        raise retry.BrokenAnswer(f"an empty answer (content null, finish_reason {finish})", response)
    return response


class OpenAIProvider:
    """`--judge openai:MODEL`. The SDK client is made on first use, so `--offline` needs no key."""

    name = "openai"
    simulated = False

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None) -> None:
        self.model = model
        self.base_url = base_url  # None: OPENAI_BASE_URL, else api.openai.com
        self._api_key = api_key  # None: OPENAI_API_KEY
        self._client: openai.AsyncOpenAI | None = None

    @property
    def endpoints(self) -> tuple[str, ...]:
        url = self.base_url or os.environ.get("OPENAI_BASE_URL") or endpoints.OFFICIAL["openai"]
        return (endpoints.normalize(url),)

    def prepare(self) -> None:
        self.client()

    def classify(self, exc: BaseException) -> retry.ErrorKind:
        return retry.sort_error(exc, TRANSIENT)

    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            try:
                self._client = openai.AsyncOpenAI(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    max_retries=0,  # the engine retries, and counts each attempt
                    http_client=openai.DefaultAioHttpClient(),  # aiohttp: about 2x the throughput of httpx
                )
            except openai.OpenAIError:
                raise FatalProviderError(
                    f"--judge openai:{self.model} needs OPENAI_API_KEY, which is not set"
                    " (a local OpenAI-compatible server accepts any value)"
                ) from None
        return self._client

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        # The SDK's own POST, without `chat.completions.create`'s recursive typed transform
        # of the body: our body is already plain JSON, and that transform was a third of
        # the client's CPU time at high request rates (bin/bench-engine).
        raw = await self.client().post(
            "/chat/completions",
            body=chat_params(request),
            cast_to=ChatCompletion,
            options={"timeout": timeout, "headers": {RAW_RESPONSE_HEADER: "true"}},
        )
        response = to_response(raw.parse())  # invalid JSON: json.JSONDecodeError, as the SDK does
        response.endpoint = self.endpoints[0]
        return response

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
