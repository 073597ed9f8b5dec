"""`google:MODEL`: Gemini through Google's own SDK (google-genai, the `google` extra), with
Gemini's Batch API.

`gemini_request` builds the generateContent body for both a live call and a batch line, and
`to_response` reads an answer's JSON from either, so the two paths cannot drift apart. The
live call goes through the SDK's `generate_content` (its auth, URL building and error
classes) and asks for the raw HTTP body back (`should_return_http_response`), so the answer
is read as plain JSON rather than built into the SDK's typed models.

The SDK's own retries are off, its hidden ones included (`HttpRetryOptions(attempts=1)`: with
no retry options its aiohttp transport still retries a dropped connection once, after 1-10
s), so the engine retries and counts every attempt. The API version is pinned to v1beta,
where the Batch API lives (the SDK's default is v1).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from .. import retry, verdict_probs
from ..errors import FatalProviderError, UsageError
from .base import (
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
    read_batch_output,
)

if TYPE_CHECKING:
    from google import genai

API_VERSION = "v1beta"
CLIENT_TIMEOUT_MS = 600_000  # as the OpenAI and Anthropic SDKs bound a call by default
# CONTINUATION: stopped at the per-request token limit before the answer was complete (the
# SDK's automatic continuation is off: one request, one answer), so cut off like MAX_TOKENS
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "CONTINUATION": "length"}
# finishReasons of an answer Google's filters stopped: a refusal, whatever text came before
BLOCKED = frozenset({
    "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "ESCALATION",
})
# the account is limited or disabled for Prohibited Use Policy violations: no request can succeed
ACCOUNT_DISABLED = "PUP_LIMITED_DISABLED"
_BATCH_STATES = {"SUCCEEDED": "ended", "CANCELLED": "ended", "EXPIRED": "ended", "FAILED": "failed"}
_VERSIONED = re.compile(r"/v1(?:beta\d*)?(?:/openai)?/*$", re.I)  # a base URL that ends in an API version
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")  # google.protobuf.Duration in JSON: "37s", "0.5s"
# "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
_TOO_LONG = re.compile(r"exceeds the maximum number of tokens", re.I)


def gemini_request(request: ChatRequest) -> dict[str, Any]:
    """The generateContent body for `request` (REST JSON): system messages joined into
    `systemInstruction`, assistant turns as role `model`. Thinking is left at the model's
    default, and thinking tokens count against maxOutputTokens (Gemini's rule)."""
    system = "\n\n".join(content for role, content in request.messages if role == "system")
    body: dict[str, Any] = {
        "contents": [
            {"parts": [{"text": content}], "role": "model" if role == "assistant" else "user"}
            for role, content in request.messages if role != "system"
        ],
        "generationConfig": {"maxOutputTokens": request.max_tokens},
    }
    if request.temperature is not None:
        body["generationConfig"]["temperature"] = request.temperature
    if request.json_mode:
        body["generationConfig"]["responseMimeType"] = "application/json"
    if request.top_logprobs:
        body["generationConfig"]["responseLogprobs"] = True
        body["generationConfig"]["logprobs"] = request.top_logprobs
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}], "role": "user"}
    return body


def _sdk_config(body: dict[str, Any]) -> dict[str, Any]:
    """`gemini_request`'s body as the SDK's GenerateContentConfig fields (tests check that
    the SDK sends exactly that body)."""
    generation = body["generationConfig"]
    config = {"max_output_tokens": generation["maxOutputTokens"], "system_instruction": body.get("systemInstruction")}
    if "temperature" in generation:
        config["temperature"] = generation["temperature"]
    if "responseMimeType" in generation:
        config["response_mime_type"] = generation["responseMimeType"]
    if "responseLogprobs" in generation:
        config["response_logprobs"] = generation["responseLogprobs"]
        config["logprobs"] = generation["logprobs"]
    return config


def to_response(answer: Any) -> ChatResponse:
    """Our view of a GenerateContentResponse (its JSON): the first candidate's text parts
    joined, thought parts left out. A prompt or answer Google's filters blocked is a refusal;
    an answer of thought parts only is kept (read as unparsed: asking again would pay again
    for the same); an account disabled for policy violations is fatal. BrokenAnswer when the
    body is not such a response (a proxy's error page) or holds no answer: no text and no
    thoughts, not blocked, not cut off by the token limit."""
    blocked = json_at(answer, "promptFeedback", "blockReason")
    candidate = json_at(answer, "candidates", 0)
    parts = json_at(candidate, "content", "parts") or []
    texts = [json_at(part, "text") or "" for part in parts if not json_at(part, "thought")]
    if not (blocked or isinstance(candidate, dict)) or not isinstance(parts, list) or not all(
            isinstance(text, str) for text in texts):
        raise retry.BrokenAnswer("the response body is not a Gemini response")
    finish = json_at(candidate, "finishReason")
    finish = finish if isinstance(finish, str) else None
    if finish == ACCOUNT_DISABLED:
        raise FatalProviderError(f"finishReason {finish}: the Google account is limited or disabled for "
                                 "Prohibited Use Policy violations, so no request can succeed")
    prompt_tokens = json_at(answer, "usageMetadata", "promptTokenCount")
    # thinking is billed as output (as genai-prices reads usageMetadata too)
    output_tokens = [json_at(answer, "usageMetadata", name) for name in ("candidatesTokenCount", "thoughtsTokenCount")]
    counted = isinstance(prompt_tokens, int)
    refused = bool(blocked) or finish in BLOCKED
    # promptTokenCount includes the context cache's tokens (Gemini caches implicitly)
    read, _ = cache_tokens(prompt_tokens if counted else 0, json_at(answer, "usageMetadata", "cachedContentTokenCount"))
    response = ChatResponse(
        text="".join(texts),
        input_tokens=prompt_tokens if counted else 0,
        output_tokens=sum(n for n in output_tokens if isinstance(n, int)) if counted else 0,
        model=json_at(answer, "modelVersion") or "",
        finish_reason="content_filter" if refused else _FINISH.get(finish, finish) if finish else None,
        refusal=refused,
        usage_reported=counted,
        cache_read_tokens=read,
        logprobs=_logprobs("".join(texts), json_at(candidate, "logprobsResult")),
    )
    if response.refusal and not response.text:  # what the samples show for it
        reason = f"promptFeedback.blockReason {blocked}" if blocked else f"finishReason {finish}"
        response.text = f"(blocked by Google's filters: {reason})"
    if not response.text and response.finish_reason != "length":
        thought = any(json_at(part, "thought") for part in parts)
        if finish in (None, "STOP", "FINISH_REASON_UNSPECIFIED") and not thought:
            raise retry.BrokenAnswer(f"an empty answer (no text in the candidate, finishReason {finish})", response)
        # the model thought and stopped, or ended on a reason of its own (OTHER,
        # MALFORMED_FUNCTION_CALL, ...): that is its answer, kept and read as unparsed
        response.text = f"(no text: {'only thoughts, ' if thought else ''}finishReason {finish})"
    return response


def _logprobs(text: str, result: Any) -> list[dict[str, Any]] | None:
    """The verdict tokens of a candidate's `logprobsResult` (None: none sent, or not in the
    API's shape: `chosenCandidates` and, step by step, `topCandidates[i].candidates`, each a
    `token` with its `logProbability`)."""
    chosen, top = json_at(result, "chosenCandidates"), json_at(result, "topCandidates")
    if not isinstance(chosen, list) or not isinstance(top, list) or len(top) != len(chosen):
        return None
    tokens = []
    for picked, step in zip(chosen, top, strict=True):
        listed = json_at(step, "candidates") or []
        if not isinstance(listed, list) or not all(_candidate(c) for c in (picked, *listed)):
            return None
        tokens.append(verdict_probs.Token(picked["token"], float(picked.get("logProbability", 0.0)),
                                          tuple((c["token"], float(c.get("logProbability", 0.0))) for c in listed)))
    return verdict_probs.keep(text, tokens)


def _candidate(value: Any) -> bool:
    """A LogprobsResult candidate: a token and its log probability (absent in JSON when 0)."""
    return isinstance(json_at(value, "token"), str) and isinstance(value.get("logProbability", 0.0), int | float)


def _error_details(exc: BaseException) -> list[dict[str, Any]]:
    """The google.rpc details of an APIError's body (RetryInfo, QuotaFailure, ...)."""
    body = getattr(exc, "details", None)
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def daily_quota_spent(exc: BaseException) -> bool:
    """A 429 for an exhausted per-day quota: waiting minutes cannot fix it. Gemini sends one
    message for both kinds; only QuotaFailure's quotaId ("...PerDay...") tells them apart."""
    return any(
        "PerDay" in str(violation.get("quotaId", ""))
        for detail in _error_details(exc) if detail.get("@type", "").endswith("google.rpc.QuotaFailure")
        for violation in detail.get("violations") or [] if isinstance(violation, dict)
    )


class GoogleProvider(Provider):
    """`--judge google:MODEL`. The SDK client is made on first use, so `--offline` needs no key."""

    name = "google"
    extra = "google"
    # the order Google's SDK reads them in (it warns when both are set; here the first wins)
    key_variables = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    base_url_variable = "GOOGLE_GEMINI_BASE_URL"
    official_endpoint = "https://generativelanguage.googleapis.com"
    has_batch_api = True
    returns_logprobs = True  # some models answer a request for them with a 400 (the run stops, naming it)
    prices_id = "google"
    batch_discount = 0.5  # the Batch API bills at half the standard rates

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None) -> None:
        super().__init__(model, base_url, api_key)
        self._client: genai.Client | None = None
        self._uploads: dict[str, str] = {}  # a batch's tag -> its uploaded input file, until created

    def prepare(self) -> None:
        super().prepare()
        url = self.base_url or os.environ.get(self.base_url_variable or "") or ""
        if _VERSIONED.search(url):  # e.g. Google's REST base, or the one `openai:` uses for Gemini
            where = "--base-url" if self.base_url else self.base_url_variable
            raise UsageError(f"{where} {retry.redact(url)}: give the server's root, without the API version "
                             f"(google-genai adds /{API_VERSION} itself)")
        self.client()

    def classify(self, exc: BaseException) -> retry.ErrorKind:
        status = retry.status_of(exc)
        if status == 429 and daily_quota_spent(exc):
            return retry.ErrorKind.FATAL
        if status == 400 and _TOO_LONG.search(retry.error_code(exc)):
            return retry.ErrorKind.REJECTED
        return retry.sort_error(exc)  # transport errors are aiohttp's and asyncio's own

    def retry_after(self, exc: BaseException) -> float | None:
        """A retry-after header (a proxy's), else the RetryInfo.retryDelay Gemini sends."""
        asked = retry.retry_after(exc)
        if asked is not None:
            return asked
        for detail in _error_details(exc):
            if detail.get("@type", "").endswith("google.rpc.RetryInfo"):
                match = _DURATION.match(str(detail.get("retryDelay", "")))
                if match:
                    return float(match.group(1))
        return None

    @classmethod
    def price(cls, model: str, input_tokens: int, output_tokens: int, batch: bool = False,
              cache_read: int = 0, cache_write: int = 0) -> float | None:
        # the API takes "models/gemini-2.5-flash" as well; genai-prices knows the bare name only
        return super().price(model.removeprefix("models/"), input_tokens, output_tokens, batch, cache_read, cache_write)

    def client(self) -> genai.Client:
        if self._client is None:
            try:
                from google import genai
                from google.genai import types
            except ImportError:
                raise FatalProviderError(
                    f"--judge google:{self.model} needs Google's SDK: pip install 'rmb-judge[google]'"
                    " (bin/rmb-judge installs it by itself)"
                ) from None
            given = [self._api_key, *map(os.environ.get, self.key_variables)]
            key = next((value.strip() for value in given if value and value.strip()), None)
            if not key:
                raise FatalProviderError(
                    f"--judge google:{self.model} needs GOOGLE_API_KEY or GEMINI_API_KEY, neither of which is set"
                )
            url = self.base_url or os.environ.get(self.base_url_variable or "")
            try:
                self._client = genai.Client(
                    api_key=key,
                    vertexai=False,  # GOOGLE_GENAI_USE_VERTEXAI must not switch the judge to another API
                    http_options=types.HttpOptions(
                        base_url=url or None,
                        api_version=API_VERSION,
                        retry_options=types.HttpRetryOptions(attempts=1),  # the engine retries
                        # the batch calls' bound (live calls set their own): the SDK's is none at all
                        timeout=CLIENT_TIMEOUT_MS,
                    ),
                )
            except ValueError as exc:  # the SDK's own checks of its settings
                raise FatalProviderError(f"--judge google:{self.model}: {retry.redact(str(exc))}") from None
        return self._client

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        from google.genai import types

        body = gemini_request(request)
        config = types.GenerateContentConfig(
            **_sdk_config(body),
            http_options=types.HttpOptions(timeout=max(1, math.ceil(timeout * 1000))),  # milliseconds
            automatic_continuation=False,  # one request, one answer
            should_return_http_response=True,  # the body as sent, read as JSON below
        )
        answer = await self.client().aio.models.generate_content(
            model=self.model, contents=body["contents"], config=config
        )
        raw = answer.sdk_http_response.body if answer.sdk_http_response else None
        try:
            parsed = json.loads(raw or "")
        except ValueError:
            raise retry.BrokenAnswer("the response body is not JSON") from None
        response = to_response(parsed)
        response.endpoint = self.endpoints[0]
        return response

    # -- the Batch API: a JSONL file of keyed requests, then a batch over it -------------

    async def submit_batch(self, items: BatchItems, tag: str, timeout: float) -> str:
        from google.genai import types

        aio = self.client().aio
        file_name = self._uploads.get(tag)  # a retried creation does not upload again
        if file_name is None:
            lines = [{"key": custom_id, "request": gemini_request(request)} for custom_id, request in items]
            data = "".join(json.dumps(line) + "\n" for line in lines).encode()
            upload = await bounded(aio.files.upload(file=io.BytesIO(data), config=types.UploadFileConfig(
                mime_type="jsonl", display_name=tag, http_options=_timeout(timeout * TRANSFER_TIMEOUTS),
            )), timeout * TRANSFER_TIMEOUTS)
            if not upload.name:
                raise retry.BrokenAnswer("the uploaded batch file came back without a name")
            file_name = self._uploads[tag] = upload.name
        job = await bounded(aio.batches.create(model=self.model, src=file_name, config=types.CreateBatchJobConfig(
            display_name=tag, http_options=_timeout(timeout),
        )), timeout)
        if not job.name:
            raise retry.BrokenAnswer("the batch was created without a name")
        self._uploads.pop(tag, None)
        return job.name

    async def find_batch(self, tag: str, custom_ids: Collection[str], since: float, known: Collection[str],
                         timeout: float) -> str | None:
        """The batch whose display name is `tag`, among every one listed (the order of the
        listing is not documented)."""
        from google.genai import types

        pager = await bounded(self.client().aio.batches.list(config=types.ListBatchJobsConfig(
            page_size=self.batches_per_page, http_options=_timeout(timeout))), timeout)
        while True:
            for job in pager.page:
                if job.display_name == tag and job.name:
                    return job.name
            try:
                await bounded(pager.next_page(), timeout)
            except IndexError:  # no more pages
                return None

    async def poll_batch(self, batch_id: str, timeout: float) -> BatchStatus:
        from google.genai import types

        job = await bounded(self.client().aio.batches.get(
            name=batch_id, config=types.GetBatchJobConfig(http_options=_timeout(timeout))), timeout)
        word = job.state.value.removeprefix("JOB_STATE_") if job.state else "UNSPECIFIED"
        # The SDK leaves out the Gemini API's item counts (metadata.batchStats): none to show.
        return BatchStatus(id=batch_id, state=_BATCH_STATES.get(word, "in_progress"),
                           provider_state=word.lower(), counts={})

    async def batch_results(self, batch_id: str, timeout: float) -> BatchResults:
        from google.genai import types

        aio = self.client().aio
        job = await bounded(aio.batches.get(
            name=batch_id, config=types.GetBatchJobConfig(http_options=_timeout(timeout))), timeout)
        file_name = job.dest.file_name if job.dest else None
        if not file_name:
            return BatchResults()
        data = await bounded(aio.files.download(file=file_name, config=types.DownloadFileConfig(
            http_options=_timeout(timeout * TRANSFER_TIMEOUTS))), timeout * TRANSFER_TIMEOUTS)
        return read_batch_output(data.decode(errors="replace"), lambda item: json_at(item, "key"), _batch_item)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            self._client.close()  # its synchronous side, which aclose leaves open
            self._client = None


def _timeout(seconds: float) -> Any:
    """The SDK's per-call HTTP options for a bound of `seconds`."""
    from google.genai import types

    return types.HttpOptions(timeout=max(1, math.ceil(seconds * 1000)))  # milliseconds


def _batch_item(item: dict[str, Any]) -> ChatResponse | str:
    """One line of a batch's output file: `response`, or an `error` (google.rpc.Status)."""
    error = item.get("error") or item.get("status")
    if error:
        return f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else str(error)
    try:
        return to_response(item.get("response"))
    except (retry.BrokenAnswer, FatalProviderError) as exc:  # one item fails; the batch's others are paid for
        return str(exc)
