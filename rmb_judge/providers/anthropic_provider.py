"""`anthropic:MODEL`: Anthropic Messages through the official SDK, with Message Batches.

`message_params` builds the request body for both a live call and a Message Batches item,
and `to_response` reads a message from either. The SDK is imported on first use.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from .. import endpoints, retry
from ..errors import FatalProviderError
from .base import (
    CLOCK_SKEW,
    TRANSFER_TIMEOUTS,
    BatchItems,
    BatchResults,
    BatchStatus,
    ChatRequest,
    ChatResponse,
    Provider,
    bounded,
    json_at,
    post_json,
    read_batch_output,
)

if TYPE_CHECKING:
    import anthropic

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
    """Our view of a message (its JSON): text blocks joined (a block whose text is null counts
    as empty), thinking blocks left out. BrokenAnswer when the body is not a message (a
    proxy's error page) or holds no answer: no text, no refusal, not cut off by the limit."""
    content = json_at(message, "content")
    if json_at(message, "type") != "message" or not isinstance(content, list):
        raise retry.BrokenAnswer("the response body is not a message")
    texts = [json_at(block, "text") or "" for block in content if json_at(block, "type") == "text"]
    if not all(isinstance(text, str) for text in texts):
        raise retry.BrokenAnswer("the response body is not a message")
    stop = json_at(message, "stop_reason")
    usage = json_at(message, "usage")
    input_tokens, output_tokens = json_at(usage, "input_tokens"), json_at(usage, "output_tokens")
    counted = isinstance(input_tokens, int)
    # Anthropic's input_tokens leaves out the tokens read from and written to the prompt cache
    read, written = (json_at(usage, name) for name in ("cache_read_input_tokens", "cache_creation_input_tokens"))
    read, written = (n if isinstance(n, int) and n > 0 and counted else 0 for n in (read, written))
    response = ChatResponse(
        text="".join(texts),
        input_tokens=input_tokens + read + written if counted else 0,
        output_tokens=(output_tokens if isinstance(output_tokens, int) else 0) if counted else 0,
        model=json_at(message, "model") or "",
        finish_reason=_FINISH.get(stop, stop) if stop else None,
        refusal=stop == "refusal",
        usage_reported=counted,
        cache_read_tokens=read,
        cache_write_tokens=written,
    )
    if not response.text and not response.refusal and response.finish_reason != "length":
        raise retry.BrokenAnswer(f"an empty answer (no text in content, stop_reason {stop})", response)
    return response


class AnthropicProvider(Provider):
    """`--judge anthropic:MODEL`. The SDK client is made on first use, so `--offline` needs no key."""

    name = "anthropic"
    key_variables = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
    base_url_variable = "ANTHROPIC_BASE_URL"
    official_endpoint = endpoints.OFFICIAL["anthropic"]
    accepts_temperature = False  # API version 2026-10-21 (SDK 2.x) rejects sampling parameters
    has_batch_api = True
    prices_id = "anthropic"
    batch_discount = 0.5  # Message Batches bill input and output at half the standard rates
    # Anthropic's tokenizer is not public; Anthropic documents about 3.5 English characters
    # per Claude token.
    bytes_per_token = 3.5

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None) -> None:
        super().__init__(model, base_url, api_key)
        self._client: anthropic.AsyncAnthropic | None = None

    def prepare(self) -> None:
        super().prepare()
        self.client()

    def classify(self, exc: BaseException) -> retry.ErrorKind:
        import anthropic

        # timeouts, dropped connections and bodies the SDK could not read
        return retry.sort_error(exc, (anthropic.APIConnectionError, anthropic.APIResponseValidationError))

    def client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            import anthropic

            missing = f"--judge anthropic:{self.model} needs ANTHROPIC_API_KEY, which is not set"
            try:
                client = anthropic.AsyncAnthropic(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    max_retries=0,  # the engine retries, and counts each attempt
                    http_client=anthropic.DefaultAioHttpClient(limits=self.http_limits()),
                )
            except anthropic.CredentialsError as exc:  # a broken ANTHROPIC_PROFILE / config file
                raise FatalProviderError(f"{missing} and {exc}") from None
            if client.api_key is None and client.auth_token is None and client.credentials is None:
                raise FatalProviderError(missing)
            self._client = client
        return self._client

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        response = to_response(await post_json(self.client(), "/v1/messages", message_params(request), timeout))
        response.endpoint = self.endpoints[0]
        return response

    # -- Message Batches -----------------------------------------------------------------

    async def submit_batch(self, items: BatchItems, tag: str, timeout: float) -> str:
        """(Message Batches keep no tag: `find_batch` knows a batch by its time, size and items.)"""
        requests = [{"custom_id": custom_id, "params": message_params(request)} for custom_id, request in items]
        batch = await bounded(self.client().messages.batches.create(
            requests=requests, timeout=timeout),  # type: ignore[arg-type]
            timeout * TRANSFER_TIMEOUTS)  # the requests travel in this call
        return batch.id

    async def find_batch(self, tag: str, custom_ids: Collection[str], since: float, known: Collection[str],
                         timeout: float) -> str | None:
        """Message Batches keep no tag: the batch not in `known`, created since `since` (less
        CLOCK_SKEW; listed newest first) with as many requests as `custom_ids`, nearest in time
        to `since`; one that has ended must report only `custom_ids` (they are hashes of
        the requests). (One still running cannot be checked: should it be someone else's,
        its results name none of the requests, which then fail and are sent again.)"""
        page = await bounded(self.client().messages.batches.list(limit=self.batches_per_page, timeout=timeout), timeout)
        candidates = []
        while True:
            recent = [batch for batch in page.data if batch.created_at.timestamp() >= since - CLOCK_SKEW]
            for batch in recent:
                counts = batch.request_counts
                size = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
                if batch.id not in known and size == len(custom_ids):
                    candidates.append(batch)
            if len(recent) < len(page.data) or not page.has_next_page():
                break
            page = await bounded(page.get_next_page(), timeout)
        wanted = set(custom_ids)
        for batch in sorted(candidates, key=lambda b: abs(b.created_at.timestamp() - since)):
            if batch.processing_status != "ended":
                return batch.id
            reported = set(await self.batch_results(batch.id, timeout))
            if reported and reported <= wanted:
                return batch.id
        return None

    async def poll_batch(self, batch_id: str, timeout: float) -> BatchStatus:
        batch = await bounded(self.client().messages.batches.retrieve(batch_id, timeout=timeout), timeout)
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

    async def batch_results(self, batch_id: str, timeout: float) -> BatchResults:
        """The results file, read line by line as JSON (the SDK's own reader stops at the first
        line it cannot read, and builds no answer from a line of the wrong shape)."""
        import httpx2

        client = self.client()
        batch = await bounded(client.messages.batches.retrieve(batch_id, timeout=timeout), timeout)
        if not batch.results_url:
            return BatchResults()
        answer = await bounded(client.get(
            batch.results_url, cast_to=httpx2.Response,
            options={"headers": {"Accept": "application/binary"}, "timeout": timeout},
        ), timeout * TRANSFER_TIMEOUTS)
        return read_batch_output(answer.text, lambda item: json_at(item, "custom_id"), _batch_item)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _batch_item(item: dict[str, Any]) -> ChatResponse | str:
    """One line of a batch's results: a succeeded `result` holds the message; an errored one
    the error; otherwise the request expired or was canceled."""
    result = json_at(item, "result")
    kind = json_at(result, "type")
    if kind == "succeeded":
        try:
            return to_response(json_at(result, "message"))
        except retry.BrokenAnswer as exc:
            return str(exc)
    if kind == "errored":
        return f"{json_at(result, 'error', 'error', 'type')}: {json_at(result, 'error', 'error', 'message')}"
    return str(kind) if isinstance(kind, str) else "the batch output line holds no result"
