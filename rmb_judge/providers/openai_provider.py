"""`openai:MODEL`: OpenAI Chat Completions, and any OpenAI-compatible server (vLLM, llama.cpp),
through the official SDK, with OpenAI's Batch API.

`chat_params` builds the request body for both a live call and a Batch API line, and
`to_response` reads a completion from either, so the two paths cannot drift apart. The SDK
is imported on first use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from .. import endpoints, pricing, retry, verdict_probs
from ..errors import FatalProviderError
from .base import (
    BATCH_TAG,
    CLOCK_SKEW,
    TRANSFER_TIMEOUTS,
    BatchItems,
    BatchResults,
    BatchStatus,
    ChatRequest,
    ChatResponse,
    Provider,
    bounded,
    cache_tokens,
    json_at,
    post_json,
    read_batch_output,
)

if TYPE_CHECKING:
    import openai

# o1, o3, o4-mini, gpt-5, gpt-5.1-mini ...: no temperature, and max_completion_tokens.
_REASONING = re.compile(r"^(o\d|gpt-5)")
_BATCH_STATES = {"completed": "ended", "expired": "ended", "cancelled": "ended", "failed": "failed"}


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
    if request.top_logprobs:
        params["logprobs"] = True
        params["top_logprobs"] = request.top_logprobs
    return params


def to_response(completion: Any) -> ChatResponse:
    """Our view of a completion (its JSON). BrokenAnswer when the body is not one (a proxy's
    error page) or holds no answer: no text, no refusal and not cut off by the token limit."""
    message = json_at(completion, "choices", 0, "message")
    content, refusal = json_at(message, "content"), json_at(message, "refusal")
    if not isinstance(message, dict) or not isinstance(content or "", str) or not isinstance(refusal or "", str):
        raise retry.BrokenAnswer("the response body is not a chat completion")
    finish = json_at(completion, "choices", 0, "finish_reason")
    prompt_tokens, completion_tokens = json_at(completion, "usage", "prompt_tokens"), json_at(
        completion, "usage", "completion_tokens")
    counted = isinstance(prompt_tokens, int)
    details = json_at(completion, "usage", "prompt_tokens_details")
    read, written = cache_tokens(prompt_tokens if counted else 0, json_at(details, "cached_tokens"),
                                 json_at(details, "cache_write_tokens"))
    response = ChatResponse(
        text=content or refusal or "",
        input_tokens=prompt_tokens if counted else 0,
        output_tokens=(completion_tokens if isinstance(completion_tokens, int) else 0) if counted else 0,
        model=json_at(completion, "model") or "",
        finish_reason="refusal" if refusal else finish,
        refusal=bool(refusal) or finish == "content_filter",
        usage_reported=counted,
        cache_read_tokens=read,
        cache_write_tokens=written,
    )
    response.logprobs = _logprobs(response.text, json_at(completion, "choices", 0, "logprobs"))
    if not response.text and not response.refusal and finish != "length":
        raise retry.BrokenAnswer(f"an empty answer (content null, finish_reason {finish})", response)
    return response


def _logprobs(text: str, logprobs: Any) -> list[dict[str, Any]] | None:
    """The verdict tokens of a completion's `logprobs.content` (None: none sent, or not in
    the shape of the API's: each item's `token`, `logprob`, `bytes` and `top_logprobs`)."""
    items = json_at(logprobs, "content")
    if not isinstance(items, list):
        return None
    tokens = []
    for item in items:
        token, logprob, raw = json_at(item, "token"), json_at(item, "logprob"), json_at(item, "bytes")
        top = json_at(item, "top_logprobs") or []
        if not (isinstance(token, str) and isinstance(logprob, int | float) and isinstance(top, list)
                and all(isinstance(json_at(t, "token"), str) and isinstance(json_at(t, "logprob"), int | float)
                        for t in top)):
            return None
        tokens.append(verdict_probs.Token(
            token, float(logprob), tuple((t["token"], float(t["logprob"])) for t in top),
            bytes(raw) if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw) else None,
        ))
    return verdict_probs.keep(text, tokens)


class OpenAIProvider(Provider):
    """`--judge openai:MODEL`. The SDK client is made on first use, so `--offline` needs no key."""

    name = "openai"
    key_variables = ("OPENAI_API_KEY",)
    base_url_variable = "OPENAI_BASE_URL"
    official_endpoint = endpoints.OFFICIAL["openai"]
    # The SDK adds nothing to a base URL, and OpenAI-compatible servers (vLLM, llama.cpp,
    # LiteLLM, ...) serve the API under /v1: `http://h:p` that answers is `http://h:p/v1`.
    api_path = "/v1"
    has_batch_api = True
    returns_logprobs = True
    prices_id = "openai"
    batch_discount = 0.5  # the Batch API bills input and output at half the standard rates

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None) -> None:
        super().__init__(model, base_url, api_key)
        self._client: openai.AsyncOpenAI | None = None
        self._uploads: dict[str, str] = {}  # a batch's tag -> its uploaded input file, until created

    def prepare(self) -> None:
        super().prepare()
        self.client()

    @classmethod
    def no_temperature(cls, model: str) -> str | None:
        if is_reasoning_model(model):  # chat_params sends none: it would be keyed, never sent
            return f"{cls.name}:{model} is a reasoning model, which takes no temperature"
        return super().no_temperature(model)

    @classmethod
    def no_logprobs(cls, model: str) -> str | None:
        if is_reasoning_model(model):
            return f"{cls.name}:{model} is a reasoning model, whose answers come without token logprobs"
        return super().no_logprobs(model)

    def classify(self, exc: BaseException) -> retry.ErrorKind:
        import openai

        # timeouts, dropped connections and bodies the SDK could not read
        return retry.sort_error(exc, (openai.APIConnectionError, openai.APIResponseValidationError))

    @classmethod
    def count_tokens(cls, model: str, messages: Sequence[tuple[str, str]]) -> pricing.TokenCount:
        return pricing.tiktoken_tokens(model, messages) or super().count_tokens(model, messages)

    @classmethod
    def count_text(cls, model: str, text: str) -> int:
        counted = pricing.tiktoken_text(model, text)
        return super().count_text(model, text) if counted is None else counted

    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            import openai

            try:
                self._client = openai.AsyncOpenAI(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    max_retries=0,  # the engine retries, and counts each attempt
                    # aiohttp: about 2x the throughput of httpx
                    http_client=openai.DefaultAioHttpClient(limits=self.http_limits()),
                )
            except openai.OpenAIError:
                raise FatalProviderError(
                    f"--judge openai:{self.model} needs OPENAI_API_KEY, which is not set"
                    " (a local OpenAI-compatible server accepts any value)"
                ) from None
        return self._client

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        response = to_response(await post_json(self.client(), "/chat/completions", chat_params(request), timeout))
        response.endpoint = self.endpoints[0]
        return response

    # -- the Batch API: a JSONL file of requests, then a batch over it ---------------------

    async def submit_batch(self, items: BatchItems, tag: str, timeout: float) -> str:
        client = self.client()
        file_id = self._uploads.get(tag)  # a retried creation does not upload again
        if file_id is None:
            lines = [
                {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                 "body": chat_params(request)}
                for custom_id, request in items
            ]
            data = "".join(json.dumps(line) + "\n" for line in lines).encode()
            upload = await bounded(client.files.create(
                file=(f"{tag}.jsonl", data, "application/jsonl"), purpose="batch", timeout=timeout,
            ), timeout * TRANSFER_TIMEOUTS)
            file_id = self._uploads[tag] = upload.id
        batch = await bounded(client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={BATCH_TAG: tag}, timeout=timeout,
        ), timeout)
        self._uploads.pop(tag, None)
        return batch.id

    async def find_batch(self, tag: str, custom_ids: Collection[str], since: float, known: Collection[str],
                         timeout: float) -> str | None:
        """The batch whose metadata holds `tag`, among those listed (newest first) back to `since`."""
        page = await bounded(self.client().batches.list(limit=self.batches_per_page, timeout=timeout), timeout)
        while True:
            for batch in page.data:
                if (batch.metadata or {}).get(BATCH_TAG) == tag:
                    return batch.id
                if batch.created_at < since - CLOCK_SKEW:
                    return None
            if not page.has_next_page():
                return None
            page = await bounded(page.get_next_page(), timeout)

    async def poll_batch(self, batch_id: str, timeout: float) -> BatchStatus:
        batch = await bounded(self.client().batches.retrieve(batch_id, timeout=timeout), timeout)
        counts = batch.request_counts
        total, succeeded, errored = (counts.total, counts.completed, counts.failed) if counts else (0, 0, 0)
        return BatchStatus(
            id=batch.id,
            state=_BATCH_STATES.get(batch.status, "in_progress"),
            provider_state=batch.status,
            counts={"processing": total - succeeded - errored, "succeeded": succeeded, "errored": errored},
        )

    async def batch_results(self, batch_id: str, timeout: float) -> BatchResults:
        client = self.client()
        batch = await bounded(client.batches.retrieve(batch_id, timeout=timeout), timeout)
        text = ""
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await bounded(client.files.content(file_id, timeout=timeout), timeout * TRANSFER_TIMEOUTS)
                text += content.text + "\n"
        return read_batch_output(text, lambda item: json_at(item, "custom_id"), _batch_item)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _batch_item(item: dict[str, Any]) -> ChatResponse | str:
    """One line of a batch's output or error file: `response` (its status and body), or an `error`."""
    error, status, body = json_at(item, "error"), json_at(item, "response", "status_code"), json_at(
        item, "response", "body")
    if error:
        return f"{json_at(error, 'code')}: {json_at(error, 'message')}"
    if not isinstance(status, int) or not isinstance(body, dict):
        return "the batch output line holds no response body"
    if status != 200:
        return f"HTTP {status}: {json_at(body, 'error', 'message') or json.dumps(body)[:200]}"
    try:
        return to_response(body)
    except retry.BrokenAnswer as exc:
        return str(exc)
