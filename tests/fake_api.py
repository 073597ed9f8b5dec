"""A loopback fake of the OpenAI, Anthropic and Gemini HTTP APIs, for driving the real SDK clients.

Both SDKs sit on httpx2, which httpx mocking libraries do not see, so the tests talk HTTP to
this aiohttp server instead. It speaks OpenAI Chat Completions, Files and Batches (under
`/v1` and at the root, so one URL serves both SDKs) and Anthropic Messages and Message
Batches (under `/v1`) and Gemini generateContent, Files and Batches (under `/v1beta`, which
GoogleProvider pins, and `/v1`, the SDK's default; batches under `/v1beta` only, as
`/v1/batches/ID` is OpenAI's). Batches are listed newest first as each API pages them, with
OpenAI's metadata and Gemini's display name as created. What the "model" answers comes from
a `responder`; failures come from a per-call `schedule` (batch items too, whose output
lines it can break: `Fault.no_body()`, ...), a seeded `fault_rate`, a `capacity_rpm` limit or
`required_key`; batch creations can fail after the batch was made (`fail_after_create`) and
status answers trickle in (`status_trickle`). Every request is recorded in `requests`.

    async with FakeAPI() as api:            # or: with FakeAPI().run_in_thread() as api:
        api.schedule(Fault.http(429, retry_after=1), None, Reply("[[B]]"))
        ... openai.AsyncOpenAI(base_url=api.openai_url, api_key=FAKE_KEY) ...
        assert len(api.calls("openai")) == 3

As a process (the URL is the first line on stdout; serves until killed):
    python tests/fake_api.py --port 0 --fault-rate 0.3 --judge first
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import pytest
from aiohttp import web

from rmb_judge.providers.mock import approx_tokens, extract_pair, hash_preference, simulated_reply, stable_hash
from rmb_judge.records import Record

Wire = Literal["openai", "anthropic", "google"]
FAKE_KEY = "sk-fake-0123456789abcdef"  # what `env()` exports; tests grep outputs for it


@dataclass(frozen=True)
class Reply:
    """What the model says; the server renders it in the caller's wire format."""

    text: str | None  # None: openai content null; anthropic a text block whose text is null
    finish: Literal["stop", "length", "content_filter"] = "stop"  # anthropic: end_turn, max_tokens, refusal
    refusal: bool = False  # openai: message.refusal = text, content null; anthropic: stop_reason refusal
    thinking: str | None = None  # anthropic: thinking blocks first; openai: reasoning_content
    input_tokens: int | None = None  # None: approx_tokens(prompt)
    output_tokens: int | None = None  # None: approx_tokens(text)
    # input tokens read from the provider's prompt cache (part of the input): openai
    # prompt_tokens_details.cached_tokens, anthropic cache_read_input_tokens, google
    # cachedContentTokenCount; and (anthropic, openai) written to it
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    finish_word: str | None = None  # the wire's own finish word, sent as is (e.g. google "CONTINUATION")
    # asked for logprobs: the probabilities at the verdict token ({"A": 0.8, "B": 0.2}; C or
    # tie for a tie); None: `verdict_distribution`'s
    probs: dict[str, float] | None = None


@dataclass(frozen=True)
class Fault:
    """A failure in place of a reply. In a batch, `http` errors an item and `expired` expires it."""

    kind: Literal["http", "hang", "invalid_json", "garbage", "expired", "empty", "reset",
                  "no_body", "not_json", "duplicate", "repeated"]
    status: int = 200
    retry_after: float | None = None  # `retry-after` header, seconds
    retry_after_ms: int | None = None  # `retry-after-ms` header (OpenAI SDK reads it first)
    seconds: float = 0.0  # hang: how long before the normal reply
    message: str | None = None  # http: the error body's message instead of the usual one
    retry_after_raw: str | None = None  # http: a `retry-after` header value sent as is
    quota_id: str | None = None  # google 429: QuotaFailure's quotaId (a "...PerDay..." one: daily quota spent)

    @classmethod
    def http(cls, status: int, retry_after: float | None = None, retry_after_ms: int | None = None,
             message: str | None = None, retry_after_raw: str | None = None, quota_id: str | None = None) -> Fault:
        """An error status with the wire's real error JSON body (429, 500, 503, 529, 400, 401, ...).
        On the google wire `retry_after` goes in the body's RetryInfo.retryDelay, as Gemini sends it."""
        return cls("http", status, retry_after, retry_after_ms, message=message, retry_after_raw=retry_after_raw,
                   quota_id=quota_id)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        """Answer only after `seconds`: longer than a client timeout, it looks like a dead server."""
        return cls("hang", seconds=seconds)

    @classmethod
    def invalid_json(cls) -> Fault:
        """200, `application/json`, a body cut off mid-object."""
        return cls("invalid_json")

    @classmethod
    def garbage(cls) -> Fault:
        """200 with an HTML page, as a misconfigured proxy sends."""
        return cls("garbage")

    @classmethod
    def empty(cls) -> Fault:
        """200 with no answer in it: openai `content: null` (no refusal), anthropic `content: []`."""
        return cls("empty")

    @classmethod
    def reset(cls) -> Fault:
        """The connection is dropped after the request was read: it may have been billed."""
        return cls("reset")

    @classmethod
    def expired(cls) -> Fault:
        """Batch items only: the batch window ended before this request ran."""
        return cls("expired")

    @classmethod
    def no_body(cls) -> Fault:
        """Batch items only: the item's output line names it but holds no answer (openai: a
        `response` without `body`; anthropic: a succeeded `result` without `message`;
        google: neither `response` nor `error`)."""
        return cls("no_body")

    @classmethod
    def not_json(cls) -> Fault:
        """Batch items only: the item's output line is cut off mid-object (not JSON)."""
        return cls("not_json")

    @classmethod
    def duplicate(cls) -> Fault:
        """Batch items only: the item's output line comes twice, with different answers."""
        return cls("duplicate")

    @classmethod
    def repeated(cls) -> Fault:
        """Batch items only: the item's output line comes twice, the same both times."""
        return cls("repeated")


BATCH_LINE_FAULTS = frozenset({"expired", "no_body", "not_json", "duplicate", "repeated"})


Outcome = Reply | Fault
Responder = Callable[[dict[str, Any], Wire], Outcome]


@dataclass
class Call:
    """One HTTP request as the server saw it (header names lower-cased)."""

    wire: Wire
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None  # parsed JSON; for a file upload {"purpose", "filename", "bytes"}


CALL = web.RequestKey("call", Call)  # the request's record, for handlers to fill in the body


# ---------------------------------------------------------------- responders


def prompt_text(body: dict[str, Any], wire: Wire) -> str:
    """All text the request shows the model, system first (as MockProvider joins it)."""
    if wire == "google":
        turns = [body.get("systemInstruction") or {}, *body.get("contents", [])]
        return "\n\n".join(text for turn in turns for text in _texts(turn.get("parts")))
    parts = _texts(body.get("system")) if wire == "anthropic" else []
    for message in body.get("messages", []):
        parts += _texts(message.get("content"))
    return "\n\n".join(parts)


def prompt_digest(prompt: str) -> str:
    """What the server logs per call, so a test can tell which cached prompts were sent again."""
    return hashlib.sha256(prompt.encode()).hexdigest()


def _texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part.get("text", "") for part in content if isinstance(part, dict)]


def hash_judge(body: dict[str, Any], wire: Wire) -> Reply:
    """The default: the mock judge's deterministic verdict (`hash_preference`), in the prompt's style."""
    return Reply(simulated_reply(prompt_text(body, wire)))


UNDECIDED = "I have compared both answers with my own, and will state my verdict when asked to."


def slow_to_conclude(body: dict[str, Any], wire: Wire) -> Reply:
    """A judge that for a third of the prompts (by digest) first states no verdict label, and
    gives the mock's verdict when asked to continue (a template's follow-up turn, whose request
    holds that first reply)."""
    prompt = prompt_text(body, wire)
    if UNDECIDED in prompt:
        return Reply("Continuing: " + simulated_reply(prompt.partition(UNDECIDED)[0]))
    if int(prompt_digest(prompt), 16) % 3 == 0:
        return Reply(UNDECIDED)
    return Reply(simulated_reply(prompt))


def first_pick(body: dict[str, Any], wire: Wire) -> Reply:
    """Always prefers the answer shown first (`[[A]]`): a maximally position-biased judge."""
    return Reply(simulated_reply(prompt_text(body, wire), prefer=lambda a, b: "A"))


def label_judge(records: Iterable[Record]) -> Responder:
    """A judge that always agrees with RMB's labels, so a run's accuracy is known to be 1.0.

    Answer pairs it does not know (another dataset, a template without the usual answer
    markers) fall back to `hash_preference`.
    """
    preferred: dict[frozenset[str], str] = {}
    for record in records:
        best = record.chosen[0].text.strip()
        for other in record.rejected:
            preferred[frozenset((best, other.text.strip()))] = best

    def prefer(answer_a: str, answer_b: str) -> str:
        best = preferred.get(frozenset((answer_a.strip(), answer_b.strip())))
        if best is None:
            return hash_preference(answer_a, answer_b)
        return "A" if best == answer_a.strip() else "B"

    def respond(body: dict[str, Any], wire: Wire) -> Reply:
        return Reply(simulated_reply(prompt_text(body, wire), prefer=prefer))

    return respond


def rewardbench2_judge(records: Iterable[Record], every: int = 6) -> Responder:
    """A RewardBench 2 judge that knows the correct answers: a 4-way prompt gets the slot of a
    correct answer, unless the prompt's hash says otherwise (then the slot of its last answer);
    a rating prompt gets 9 for a correct answer, a hash's 1-9 for another. Every `every`-th
    prompt (by hash) is answered with no readable verdict."""
    correct = {answer.text.strip() for record in records for answer in record.chosen}

    def respond(body: dict[str, Any], wire: Wire) -> Reply:
        prompt = prompt_text(body, wire)
        draw = stable_hash(prompt)
        if draw % every == 0:
            return Reply("Each answer has merits; I cannot choose.")
        slots = re.findall(r"Start of Assistant ([A-D])'s Answer\]\n(.*?)\n\[The End", prompt, re.S)
        if slots:
            right = [slot for slot, text in slots if text.strip() in correct]
            return Reply(f"Weighing them: [[{right[0] if right and draw % 5 else slots[-1][0]}]]")
        answer = prompt.partition("[Response]\n")[2].rpartition("\n\n[Your judgement]")[0].strip()
        return Reply(f"A fair response.\n\n{9 if answer in correct else 1 + draw % 9}")

    return respond


REASONING = ("Both assistants address the question. Assistant A covers the main points and is "
             "accurate, while Assistant B adds some detail but is less focused on what was asked. "
             "Weighing helpfulness, relevance, accuracy, depth and level of detail, and ignoring "
             "length and position, one answer serves the user better overall. ") * 2


def calibrated_judge(records: Iterable[Record], skill: float = 1.0, quick_skill: float = 0.6) -> Responder:
    """A judge whose verdict probabilities are calibrated by construction, for benchmarks.

    For each pair it draws evidence s ~ N(mu, 1) for the label-preferred answer (from the
    prompt's hash) and gives it probability sigmoid(2 mu s), which is exactly how often such
    evidence comes with the preferred answer being right; its verdict is the likelier side, so
    its accuracy is Phi(mu). Asked to explain (the `rmb` template) it writes REASONING first and
    judges with mu = `skill`; asked for the verdict alone (`verdict`), with mu = `quick_skill`."""
    preferred: dict[frozenset[str], str] = {}
    for record in records:
        for other in record.rejected:
            preferred[frozenset((record.chosen[0].text.strip(), other.text.strip()))] = record.chosen[0].text.strip()

    def respond(body: dict[str, Any], wire: Wire) -> Reply:
        prompt = prompt_text(body, wire)
        pair = extract_pair(prompt)
        if pair is None:
            return Reply("[[A]]")
        explain = "short explanation" in prompt
        mu = skill if explain else quick_skill
        u = (stable_hash(prompt) % 1_000_000 + 0.5) / 1_000_000
        evidence = mu + NormalDist().inv_cdf(u)
        right = 1 / (1 + math.exp(-2 * mu * evidence))
        best = preferred.get(frozenset(answer.strip() for answer in pair), pair[0].strip())
        p_a = right if pair[0].strip() == best else 1 - right
        verdict = "A" if p_a >= 0.5 else "B"
        return Reply((REASONING + "\n\n" if explain else "") + f"[[{verdict}]]", probs={"A": p_a, "B": 1 - p_a})

    return respond


# ---------------------------------------------------------------- wire formats

_OPENAI_ERRORS = {  # status -> (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported"),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS = {  # status -> (type, message)
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}
_GOOGLE_ERRORS = {  # status -> (status word, message)
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),  # Gemini sends 400; proxies 401
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "models/{model} is not found for API version v1beta, or is not supported for generateContent."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    500: ("INTERNAL", "An internal error has occurred."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out."),
}


def error_body(
    wire: Wire, status: int, model: str = "", key: str = "", message: str | None = None,
    retry_delay: float | None = None, quota_id: str | None = None,
) -> dict[str, Any]:
    """The JSON error body each API really sends for `status` (a 401 echoes the key masked;
    a Gemini 429 carries QuotaFailure and, given `retry_delay`, RetryInfo)."""
    masked = f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if key else "<none>"
    if wire == "google":
        word, text = _GOOGLE_ERRORS.get(status, ("UNKNOWN", f"HTTP {status}"))
        details: list[dict[str, Any]] = []
        if status == 429:
            violation = {"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                         "quotaId": quota_id or "GenerateRequestsPerMinutePerProjectPerModel", "quotaValue": "60"}
            details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]})
        if retry_delay is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay:g}s"})
        error = {"code": status, "message": message or text.format(model=model), "status": word}
        return {"error": {**error, "details": details} if details else error}
    if wire == "openai":
        kind, code, text = _OPENAI_ERRORS.get(status, ("server_error", None, f"HTTP {status}"))
        text = message or text.format(model=model, key=masked)
        return {"error": {"message": text, "type": kind, "param": None, "code": code}}
    kind, text = _ANTHROPIC_ERRORS.get(status, ("api_error", f"HTTP {status}"))
    text = message or text.format(model=model)
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_fake"}


def _usage(reply: Reply, body: dict[str, Any], wire: Wire, scale: float = 1.0) -> tuple[int, int]:
    """The tokens the server bills: the reply's own counts, else approx_tokens, times `scale`
    (a provider whose tokenizer counts more than the client's estimate)."""
    prompt = approx_tokens(prompt_text(body, wire)) if reply.input_tokens is None else reply.input_tokens
    output = approx_tokens(reply.text or "") if reply.output_tokens is None else reply.output_tokens
    if wire == "google" and reply.thinking:  # Gemini bills thinking as output
        output += approx_tokens(reply.thinking)
    return round(prompt * scale), round(output * scale)


# ---------------------------------------------------------------- token logprobs

# The fake's tokenizer, GPT-like: "[[", "]]", a word with its leading space, a run of blanks,
# one punctuation mark; a character outside ASCII is one token per UTF-8 byte, named as
# OpenAI names them ("bytes:\\xe2"), its true byte in `bytes`.
_FAKE_TOKEN = re.compile(r"\[\[|\]\]|[ ]?[A-Za-z0-9_]+|\s+|[^A-Za-z0-9_\s]")
# where the fake's verdict token is: the last bracketed letter or JSON "winner" value
_VERDICT_AT = re.compile(r'\[\[([ABC])\]\]|"winner": "(A|B|tie)"')
FILLER = -9.0  # logprob of the filler alternatives (tokens that read as no verdict)
SURE = -0.001  # logprob of a token that is not the verdict


def fake_tokens(text: str) -> list[tuple[str, bytes]]:
    """`text` as the fake's tokens: (the token as the API names it, its bytes)."""
    tokens = []
    for piece in _FAKE_TOKEN.findall(text):
        if piece.isascii():
            tokens.append((piece, piece.encode()))
        else:
            tokens += [(f"bytes:\\x{b:02x}", bytes([b])) for b in piece.encode()]
    return tokens


def verdict_distribution(prompt: str, verdict: str) -> dict[str, float]:
    """The default probabilities at the verdict token: the verdict written gets 0.5 to 0.99 (by
    the prompt's hash), a tie 0.01, the other side the rest."""
    share = 0.5 + 0.49 * (stable_hash(prompt) % 1000) / 1000
    other = {"A": "B", "B": "A"}.get(verdict, "A")
    tie = "tie" if verdict == "tie" else "C"
    return {verdict: share, tie: 0.01, other: 1 - share - 0.01} if verdict not in ("C", "tie") else \
        {verdict: share, "A": (1 - share) / 2, "B": (1 - share) / 2}


def token_logprobs(reply: Reply, body: dict[str, Any], wire: Wire, top: int) -> list[tuple[str, bytes, float,
                                                                                        list[tuple[str, float]]]]:
    """Every generated token with its logprob and `top` alternatives: near-certain tokens with
    filler alternatives, except the verdict token, whose alternatives are the verdict
    letters at `reply.probs`. With thinking (openai wire, vLLM style) the reasoning's tokens
    come first and an end-of-turn token last, as vLLM lists them."""
    text = reply.text or ""
    found = list(_VERDICT_AT.finditer(text))
    at = (found[-1].start(1) if found[-1].group(1) else found[-1].start(2)) if found else -1
    verdict = text[at] if at >= 0 and text[at] != "t" else "tie"
    probs = reply.probs or verdict_distribution(prompt_text(body, wire), verdict)
    result, written = [], b""
    stream = fake_tokens(reply.thinking + "\n</think>\n\n") if reply.thinking and wire == "openai" else []
    for name, raw in stream:
        result.append((name, raw, SURE, _fillers(name, SURE, top)))
    for name, raw in fake_tokens(text):
        start = len(written.decode("utf-8", "ignore"))
        written += raw
        if start <= at < len(written.decode("utf-8", "ignore")):
            ranked = sorted(probs.items(), key=lambda item: -item[1])[:top]
            alternatives = [(token, math.log(p)) for token, p in ranked if p > 0]
            alternatives += [(f"alt{i}", FILLER) for i in range(top - len(alternatives))]
            result.append((name, raw, math.log(probs[name]), alternatives))
        else:
            result.append((name, raw, SURE, _fillers(name, SURE, top)))
    if reply.thinking and wire == "openai":
        result.append(("<|im_end|>", b"<|im_end|>", SURE, _fillers("<|im_end|>", SURE, top)))
    return result


def _fillers(token: str, logprob: float, top: int) -> list[tuple[str, float]]:
    return [(token, logprob), *((f"alt{i}", FILLER) for i in range(1, top))][:top]


def openai_completion(reply: Reply, body: dict[str, Any], id: str, scale: float = 1.0,
                      usage: bool = True) -> dict[str, Any]:
    prompt, output = _usage(reply, body, "openai", scale)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if reply.refusal else reply.text,
        "refusal": reply.text if reply.refusal else None,
        "annotations": [],
    }
    if reply.thinking is not None:
        message["reasoning_content"] = reply.thinking  # vLLM / DeepSeek style
    completion = {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": reply.finish_word or reply.finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens,
                                      **({"cache_write_tokens": reply.cache_write_tokens}
                                         if reply.cache_write_tokens else {})},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_fake",
    }
    if body.get("logprobs") and reply.text is not None:
        completion["choices"][0]["logprobs"] = {"refusal": None, "content": [
            {"token": name, "logprob": logprob, "bytes": list(raw),
             "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]}
            for name, raw, logprob, top in token_logprobs(reply, body, "openai", body.get("top_logprobs") or 0)
        ]}
    if not usage:
        del completion["usage"]
    return completion


_SAMPLING = {"temperature", "top_p", "top_k"}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}


def anthropic_message(reply: Reply, body: dict[str, Any], id: str, scale: float = 1.0,
                      usage: bool = True, empty: bool = False) -> dict[str, Any]:
    prompt, output = _usage(reply, body, "anthropic", scale)
    content: list[dict[str, Any]] = []
    if reply.thinking is not None:
        content.append({"type": "thinking", "thinking": reply.thinking, "signature": "fake-signature"})
        content.append({"type": "redacted_thinking", "data": "ZmFrZQ=="})
    if not empty:
        content.append({"type": "text", "text": reply.text})
    message = {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": content,
        "stop_reason": reply.finish_word or ("refusal" if reply.refusal else _STOP_REASONS[reply.finish]),
        "stop_sequence": None,
        "usage": {  # Anthropic's input_tokens leaves out the tokens read from or written to the cache
            "input_tokens": prompt - reply.cached_tokens - reply.cache_write_tokens,
            "output_tokens": output,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
        },
    }
    if not usage:
        del message["usage"]
    return message


_GOOGLE_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


def google_response(reply: Reply, body: dict[str, Any], id: str, scale: float = 1.0,
                    usage: bool = True, empty: bool = False) -> dict[str, Any]:
    """A GenerateContentResponse. `refusal`: the prompt blocked (promptFeedback.blockReason,
    no candidates); finish content_filter: the answer blocked (finishReason SAFETY); thinking
    comes first as a thought part; `empty`: a candidate with no parts."""
    prompt, output = _usage(reply, body, "google", scale)
    thoughts = round(approx_tokens(reply.thinking) * scale) if reply.thinking else 0
    answer: dict[str, Any]
    if reply.refusal:
        answer = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]}}
    else:
        parts: list[dict[str, Any]] = []
        if reply.thinking is not None:
            parts.append({"text": reply.thinking, "thought": True})
        if not empty and reply.text is not None:
            parts.append({"text": reply.text})
        content: dict[str, Any] = {"role": "model", **({"parts": parts} if parts else {})}
        finish = reply.finish_word or _GOOGLE_FINISH[reply.finish]
        answer = {"candidates": [{"content": content, "finishReason": finish, "index": 0}]}
        generation = body.get("generationConfig") or {}
        if generation.get("responseLogprobs") and not empty and reply.text is not None:
            steps = token_logprobs(reply, body, "google", generation.get("logprobs") or 0)
            answer["candidates"][0]["logprobsResult"] = {
                "topCandidates": [{"candidates": [{"token": t, "tokenId": stable_hash(t) % 50_000, "logProbability": lp}
                                                  for t, lp in top]} for _, _, _, top in steps],
                "chosenCandidates": [{"token": name, "tokenId": stable_hash(name) % 50_000, "logProbability": logprob}
                                     for name, _, logprob, _ in steps],
                "logProbabilitySum": sum(logprob for _, _, logprob, _ in steps),
            }
    if usage:
        answer["usageMetadata"] = {
            "promptTokenCount": prompt, "candidatesTokenCount": output - thoughts, "totalTokenCount": prompt + output,
            **({"thoughtsTokenCount": thoughts} if thoughts else {}),
            **({"cachedContentTokenCount": reply.cached_tokens} if reply.cached_tokens else {}),
        }
    answer.update({"modelVersion": body.get("model", ""), "responseId": id})
    return answer


# ---------------------------------------------------------------- batches


@dataclass
class FakeBatch:
    id: str
    wire: Wire
    bodies: dict[str, dict[str, Any]]  # custom_id -> request body
    outcomes: dict[str, Outcome]  # decided at creation
    created: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.time)  # what the API reports as its creation time
    metadata: dict[str, str] | None = None  # openai: as created with
    display_name: str | None = None  # google: as created with (anthropic batches keep neither)
    input_file_id: str = ""
    polls: int = 0
    cancelled: bool = False
    output_file_id: str | None = None
    error_file_id: str | None = None


def _item_state(outcome: Outcome, cancelled: bool) -> str:
    """succeeded | errored | expired | canceled (a broken output line is one the provider
    counts as succeeded)."""
    if cancelled:
        return "canceled"
    if isinstance(outcome, Reply) or outcome.kind in BATCH_LINE_FAULTS - {"expired"}:
        return "succeeded"
    return "expired" if outcome.kind == "expired" else "errored"


def _output_lines(outcome: Outcome, line: Callable[[Reply | None], dict[str, Any]], answer: Reply) -> list[str]:
    """A succeeded item's output line(s): `line(answer)`, or as a batch-line Fault breaks it
    (`line(None)`: the line without its answer)."""
    kind = outcome.kind if isinstance(outcome, Fault) else None
    if kind == "no_body":
        return [json.dumps(line(None))]
    if kind == "not_json":
        whole = json.dumps(line(answer))
        return [whole[: len(whole) // 2]]
    if kind == "duplicate":
        return [json.dumps(line(answer)), json.dumps(line(Reply(f"{answer.text} On reflection, [[A]] and [[B]]")))]
    if kind == "repeated":
        return [json.dumps(line(answer))] * 2
    return [json.dumps(line(answer))]


def _rfc3339(seconds: float) -> str:
    """A time as the Anthropic and Gemini APIs write it: 2026-01-01T12:00:00.123456Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def _item_status(outcome: Outcome) -> int:
    """An errored item's HTTP status; faults that need a live connection count as 500."""
    return outcome.status if isinstance(outcome, Fault) and outcome.kind == "http" else 500


# ---------------------------------------------------------------- vLLM's pooling API


@dataclass
class ServedRewardModel:
    """A reward model the fake serves as vLLM 0.33 does: GET /v1/models lists it, POST /pooling
    scores token ids, text or (with a tokenizer) `messages`, rendered as vLLM renders them."""

    name: str  # --served-model-name
    root: str  # the `vllm serve` argument
    max_model_len: int = 4096
    tokenizer: Any = None  # renders `messages` and tokenizes text; None: token ids only
    die_after: int | None = None  # at this many /pooling calls the server goes away (port closed)
    old_vllm: bool = False  # as vLLM before 0.12: use_activation is ignored, the sigmoid always on
    weights: str | None = None  # what it scores with, when not `root`'s (another checkpoint under one path)
    decoys: set[int] = field(default_factory=set)  # /pooling calls (from 1) whose answer has a stray entry first
    models_trickle: float = 0.0  # GET /v1/models sends its answer a byte at a time over this many seconds


def fake_reward(root: str, ids: list[int]) -> float:
    """The fake model's reward for token ids: a hash of the weights' name and the ids, so
    a test computes every reward independently, and other weights give other rewards."""
    digest = hashlib.sha256(f"{root}:{','.join(map(str, ids))}".encode()).digest()
    return (int.from_bytes(digest[:4], "big") % 2_000_001 - 1_000_000) / 1000


def pooling_prompts(body: dict[str, Any], tokenizer: Any) -> list[list[int]]:
    """The token ids of each input of a /pooling request, as vLLM builds them: token ids as
    given; text tokenized (`add_special_tokens` default true); `messages` through the chat
    template as text, then tokenized without special tokens (the template holds them)."""
    if "messages" in body:
        text = tokenizer.apply_chat_template(
            body["messages"], tokenize=False, add_generation_prompt=body.get("add_generation_prompt", False)
        )
        return [tokenizer(text, add_special_tokens=body.get("add_special_tokens", False))["input_ids"]]
    given = body["input"]
    prompts = [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given
    return [p if isinstance(p, list) else tokenizer(p, add_special_tokens=body.get("add_special_tokens", True))
            ["input_ids"] for p in prompts]


# ---------------------------------------------------------------- the server


class FakeAPI:
    """The fake server. All options are plain attributes, changeable while it runs."""

    def __init__(
        self,
        responder: Responder = hash_judge,
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
        fault_retry_after_ms: int = 10,
        capacity_rpm: float | None = None,
        latency: float = 0.0,
        required_key: str | None = None,
        batch_polls: int = 1,
        batch_seconds: float | None = None,
        port: int = 0,
        usage: bool = True,
        usage_scale: float = 1.0,
        batches: bool = True,
        rejected_share: float = 0.0,
        failing_share: float = 0.0,
    ) -> None:
        self.responder = responder
        self.usage = usage  # False: answers carry no usage object
        self.usage_scale = usage_scale  # tokens billed per token approx_tokens counts
        self.batches_served = batches  # False: no Files/Batches routes (404), as on vLLM
        # shares of prompts (by their digest, so the same ones every time) that the model always
        # rejects as too long (400), or that always fail (500)
        self.rejected_share = rejected_share
        self.failing_share = failing_share
        self.fault_rate = fault_rate  # share of model calls failing with 429/500/503, seeded
        self.seed = seed
        self.fault_retry_after_ms = fault_retry_after_ms  # on fault_rate 429s
        self.capacity_rpm = capacity_rpm  # above it: 429 with retry-after-ms (one second of burst)
        self.latency = latency  # seconds added to every model call
        self.required_key = required_key  # when set, any other key gets the wire's 401
        self.batch_polls = batch_polls  # retrievals that still see a batch in progress
        self.batch_seconds = batch_seconds  # when set: a batch ends this long after creation instead
        self.port = port
        self.url = ""
        self.requests: list[Call] = []
        self.billed: list[tuple[int, int]] = []  # (input, output) tokens of every model answer sent
        self.log: Any = None  # a text file: one line per model call, its prompt_digest
        self.timeline: Any = None  # a text file: "arrived ended status" (time.monotonic) per call
        self.served: ServedRewardModel | None = None  # set: also a vLLM server of this reward model
        self.batches: dict[str, FakeBatch] = {}
        self.files: dict[str, bytes] = {}
        # the next batch creations are made, then answered with these (see fail_after_create)
        self.create_faults: deque[Fault] = deque()
        self.refused_creates: deque[Fault] = deque()  # the next batch creations fail with these, made or not
        self.status_trickle: float | None = None  # set: seconds between the bytes of a batch status answer
        self._script: deque[Outcome | None] = deque()
        self._attempts: Counter[bytes] = Counter()  # body digest -> times seen, for fault_rate
        self._ids = itertools.count(1)
        self._tokens: float | None = None  # capacity_rpm's token bucket; starts full
        self._refilled = time.monotonic()
        self._runner: web.AppRunner | None = None

    # -- test-facing helpers

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def env(self, key: str | None = None) -> dict[str, str]:
        """Environment variables that point both SDKs (and so the CLI) at this server."""
        key = key or self.required_key or FAKE_KEY
        return {
            "OPENAI_BASE_URL": self.openai_url,
            "OPENAI_API_KEY": key,
            "ANTHROPIC_BASE_URL": self.anthropic_url,
            "ANTHROPIC_API_KEY": key,
            "GOOGLE_GEMINI_BASE_URL": self.url,
            "GEMINI_API_KEY": key,
        }

    def schedule(self, *outcomes: Outcome | None) -> None:
        """The next model calls (live or batch items, in arrival order) get these; None: normal."""
        self._script.extend(outcomes)

    def calls(self, wire: Wire | None = None) -> list[Call]:
        """The model calls received (chat completions / messages / generateContent), not files or batches."""
        paths = ("/v1/chat/completions", "/chat/completions", "/v1/messages")
        return [c for c in self.requests
                if (c.path in paths or c.path.endswith(":generateContent")) and wire in (None, c.wire)]

    def pooling_calls(self) -> list[Call]:
        """The /pooling requests received (a served reward model's scoring calls)."""
        return [c for c in self.requests if c.path == "/pooling"]

    def fail_before_create(self, *faults: Fault) -> None:
        """The next batch creations fail with these error statuses before any batch is made."""
        self.refused_creates.extend(faults)

    def fail_after_create(self, *faults: Fault) -> None:
        """The next batch creations succeed on the server, then are answered with these:
        `Fault.http(500)` (an error status), `Fault.reset()` (the connection dropped),
        `Fault.hang(s)` (the answer `s` seconds late, time for a client to be killed)."""
        self.create_faults.extend(faults)

    def batch_items(self) -> int:
        """Requests billed through batches: every item of every batch created."""
        return sum(len(batch.bodies) for batch in self.batches.values())

    def age_batches(self, seconds: float) -> None:
        """Move the batches' clock on, as if `seconds` had passed (with batch_seconds)."""
        for batch in self.batches.values():
            batch.created -= seconds

    @property
    def batches_created(self) -> int:
        return len(self.batches)

    # -- lifecycle

    async def start(self) -> str:
        app = web.Application(middlewares=[self._record], client_max_size=256 * 1024**2)
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/chat/completions", self._openai_chat)
            if not self.batches_served:
                continue
            app.router.add_post(f"{prefix}/files", self._openai_upload)
            app.router.add_get(f"{prefix}/files/{{id}}/content", self._openai_file)
            app.router.add_post(f"{prefix}/batches", self._openai_batch_create)
            app.router.add_get(f"{prefix}/batches", self._openai_batch_list)
            app.router.add_get(f"{prefix}/batches/{{id}}", self._openai_batch_get)
            app.router.add_post(f"{prefix}/batches/{{id}}/cancel", self._openai_batch_cancel)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_get("/v1/models", self._vllm_models)
        app.router.add_post("/pooling", self._vllm_pooling)
        app.router.add_post("/v1/messages/batches", self._anthropic_batch_create)
        app.router.add_get("/v1/messages/batches", self._anthropic_batch_list)
        app.router.add_get("/v1/messages/batches/{id}", self._anthropic_batch_get)
        app.router.add_get("/v1/messages/batches/{id}/results", self._anthropic_batch_results)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self._anthropic_batch_cancel)
        for version in ("/v1beta", "/v1"):  # models/NAME:generateContent, files/ID:download, ...
            app.router.add_post(version + "/models/{model}:{method}", self._google_model_method)
            app.router.add_get(version + "/files/{id}:download", self._google_download)
        app.router.add_post("/upload/{version}/files", self._google_upload_start)
        app.router.add_post("/upload-session/{id}", self._google_upload_finish)
        app.router.add_get("/v1beta/batches", self._google_batch_list)
        app.router.add_get("/v1beta/batches/{id}", self._google_batch_get)
        app.router.add_post("/v1beta/batches/{id}:cancel", self._google_batch_cancel)
        # handler_cancellation: a client that times out on a hang ends the handler too.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextmanager
    def run_in_thread(self) -> Iterator[FakeAPI]:
        """Serve from a background thread, for sync tests and in-process `asyncio.run` CLIs."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-api", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    # -- plumbing

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        wire: Wire = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        if ":" in request.path or request.path.startswith(("/v1beta/", "/upload")):
            wire = "google"
        call = Call(wire, request.method, request.path, {k.lower(): v for k, v in request.headers.items()})
        self.requests.append(call)
        request[CALL] = call
        # (a Gemini upload's second step carries no key: its URL is the credential)
        if (self.required_key is not None and _sent_key(call) != self.required_key
                and not request.path.startswith("/upload-session/")):
            # Gemini answers a wrong key 400 INVALID_ARGUMENT ("API key not valid")
            if wire == "google":
                return self._error(wire, 400, message=_GOOGLE_ERRORS[401][1])
            return self._error(wire, 401, key=_sent_key(call))
        if self.timeline is None:
            return await handler(request)
        arrived = time.monotonic()
        response = await handler(request)
        self.timeline.write(f"{arrived:.6f} {time.monotonic():.6f} {response.status}\n")
        return response

    async def _json(self, request: web.Request) -> Any:
        call: Call = request[CALL]
        call.body = json.loads(await request.read())
        return call.body

    def _error(
        self, wire: Wire, status: int, headers: dict[str, str] | None = None, **body: Any
    ) -> web.Response:
        """`status` with the wire's error body; `body` goes to `error_body` (model, key, message, ...)."""
        request_id = {"openai": "x-request-id", "anthropic": "request-id"}.get(wire)
        headers = {**({request_id: "req_fake"} if request_id else {}), **(headers or {})}
        return web.json_response(error_body(wire, status, **body), status=status, headers=headers)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _outcome(self, body: dict[str, Any], wire: Wire, digest: bytes) -> Outcome:
        """Schedule first, then the seeded fault rate, then the responder."""
        if self._script and (scripted := self._script.popleft()) is not None:
            return scripted
        if digest[0] < 256 * self.rejected_share:
            return Fault.http(400, message="This model's maximum context length is 128000 tokens.")
        if digest[0] < 256 * (self.rejected_share + self.failing_share):
            return Fault.http(500)
        if self.fault_rate:
            # Keyed on (body, attempt number): deterministic under any concurrency, and a
            # retry of a failed request draws afresh.
            attempt = self._attempts[digest]
            self._attempts[digest] += 1
            draw = hashlib.sha256(f"{self.seed}:{attempt}:".encode() + digest).digest()
            if int.from_bytes(draw[:8], "big") / 2**64 < self.fault_rate:
                status = (429, 500, 503)[draw[8] % 3]
                return Fault.http(status, retry_after_ms=self.fault_retry_after_ms if status == 429 else None)
        return self.responder(body, wire)

    def _over_capacity(self) -> float:
        """Seconds until the token bucket admits a request; 0.0 admits (and spends) one now."""
        if self.capacity_rpm is None:
            return 0.0
        rate, burst = self.capacity_rpm / 60, max(self.capacity_rpm / 60, 1.0)
        now = time.monotonic()
        refill = burst if self._tokens is None else (now - self._refilled) * rate
        self._tokens = min(burst, (self._tokens or 0.0) + refill)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / rate

    async def _model_call(self, request: web.Request, wire: Wire) -> web.Response:
        raw = await request.read()
        try:
            body = request[CALL].body = json.loads(raw)
        except ValueError:
            return self._error(wire, 400)
        if wire == "google":  # the model is in the path; the recorded body stays as sent
            body = {**body, "model": request.match_info["model"]}
        if self.log is not None:
            self.log.write(prompt_digest(prompt_text(body, wire)) + "\n")
        if wire == "anthropic" and (sampling := _SAMPLING.intersection(body)):
            # API version 2026-10-21, the SDK 2.x default, rejects these even at default values.
            return self._error(wire, 400, message=f"{min(sampling)}: Extra inputs are not permitted")
        if wait := self._over_capacity():
            return self._error(wire, 429, headers={"retry-after-ms": str(max(1, round(wait * 1000)))})
        if self.latency:
            await asyncio.sleep(self.latency)
        outcome = self._outcome(body, wire, _digest(raw))
        empty = False
        if isinstance(outcome, Fault):
            if outcome.kind == "reset":
                request.transport.close()  # after reading the request: the provider may bill it
                self.billed.append(_usage(Reply(""), body, wire, self.usage_scale))
                return web.Response(status=500)
            if outcome.kind == "empty":
                outcome, empty = Reply(None if wire == "openai" else ""), True
            elif outcome.kind != "hang":
                return self._fault(outcome, wire, body)
            else:
                await asyncio.sleep(outcome.seconds)
                outcome = self.responder(body, wire)
                if isinstance(outcome, Fault):
                    return self._fault(outcome, wire, body)
        self.billed.append(_usage(outcome, body, wire, self.usage_scale))
        if wire == "openai":
            return web.json_response(openai_completion(outcome, body, self._new_id("chatcmpl-"),
                                                       self.usage_scale, self.usage))
        if wire == "google":
            return web.json_response(google_response(outcome, body, self._new_id("resp-"), self.usage_scale,
                                                     self.usage, empty))
        return web.json_response(anthropic_message(outcome, body, self._new_id("msg_"),
                                                   self.usage_scale, self.usage, empty))

    def _fault(self, fault: Fault, wire: Wire, body: dict[str, Any]) -> web.Response:
        if fault.kind == "invalid_json":
            return web.Response(text='{"id": "broken", "choices": [{"mess', content_type="application/json")
        if fault.kind == "garbage":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if fault.kind in BATCH_LINE_FAULTS:
            raise ValueError(f"Fault.{fault.kind}() is for batch items, not live calls")
        headers = {}
        extra: dict[str, Any] = {}
        if wire == "google":  # Gemini says how long to wait in the body, not in a header
            extra = {"retry_delay": fault.retry_after, "quota_id": fault.quota_id}
        elif fault.retry_after is not None:
            headers["retry-after"] = f"{fault.retry_after:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        if fault.retry_after_raw is not None:
            headers["retry-after"] = fault.retry_after_raw
        if fault.message:
            extra["message"] = fault.message
        return self._error(wire, fault.status, model=body.get("model", ""), headers=headers, **extra)

    def _batch(self, request: web.Request, wire: Wire) -> FakeBatch | None:
        batch = self.batches.get(request.match_info["id"])
        return batch if batch is not None and batch.wire == wire else None

    def _create_batch(self, wire: Wire, items: list[tuple[str, dict[str, Any]]], prefix: str) -> FakeBatch:
        outcomes = {
            custom_id: self._outcome(body, wire, _digest(json.dumps(body, sort_keys=True).encode()))
            for custom_id, body in items
        }
        batch = FakeBatch(self._new_id(prefix), wire, dict(items), outcomes)
        self.batches[batch.id] = batch
        return batch

    def _poll(self, batch: FakeBatch) -> bool:
        """Count a retrieval; True once the batch has ended."""
        batch.polls += 1
        return self._ended(batch)

    def _ended(self, batch: FakeBatch) -> bool:
        """Whether the batch has ended (a listing does not count as a retrieval)."""
        if batch.cancelled:
            return True
        if self.batch_seconds is not None:
            return time.monotonic() - batch.created >= self.batch_seconds
        return batch.polls > self.batch_polls

    def _answer(self, outcome: Outcome, body: dict[str, Any], wire: Wire) -> Reply:
        """A succeeded batch item's answer: its Reply, or the responder's under a batch-line Fault."""
        if isinstance(outcome, Reply):
            return outcome
        answer = self.responder(body, wire)
        return answer if isinstance(answer, Reply) else Reply("[[A]]")

    def _listed(self, wire: Wire) -> list[FakeBatch]:
        """This wire's batches as the list endpoints give them: newest first."""
        return [b for b in reversed(self.batches.values()) if b.wire == wire]

    async def _created(self, request: web.Request, wire: Wire, answer: dict[str, Any]) -> web.StreamResponse:
        """The answer to a batch creation (the batch exists now), or the fault fail_after_create set."""
        fault = self.create_faults.popleft() if self.create_faults else None
        if fault is None:
            return web.json_response(answer)
        if fault.kind == "reset":
            request.transport.close()
            return web.Response(status=500)
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return web.json_response(answer)
        return self._fault(fault, wire, {})

    async def _status(self, request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
        """A batch's status, trickled a byte at a time when status_trickle is set."""
        if self.status_trickle is None:
            return web.json_response(answer)
        data = json.dumps(answer).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(len(data))})
        await response.prepare(request)
        for byte in data:
            await response.write(bytes([byte]))
            await asyncio.sleep(self.status_trickle)
        await response.write_eof()
        return response

    def _states(self, batch: FakeBatch) -> Counter[str]:
        return Counter(_item_state(o, batch.cancelled) for o in batch.outcomes.values())

    # -- vLLM (a served reward model)

    async def _vllm_models(self, request: web.Request) -> web.StreamResponse:
        served = self.served
        cards = [] if served is None else [{
            "id": served.name, "object": "model", "created": int(time.time()), "owned_by": "vllm",
            "root": served.root, "parent": None, "max_model_len": served.max_model_len, "permission": [],
        }]
        body = json.dumps({"object": "list", "data": cards}).encode()
        if served is None or not served.models_trickle:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for byte in range(len(body)):  # each byte well within a read timeout, the whole far beyond it
            await response.write(body[byte : byte + 1])
            await asyncio.sleep(served.models_trickle / len(body))
        await response.write_eof()
        return response

    async def _vllm_pooling(self, request: web.Request) -> web.StreamResponse:
        served = self.served
        raw = await request.read()
        if served is not None and served.die_after is not None and len(self.pooling_calls()) > served.die_after:
            asyncio.get_running_loop().create_task(self.stop())  # the replica dies: its port closes
            request.transport.close()
            return web.Response(status=500)
        try:
            body = request[CALL].body = json.loads(raw)
        except ValueError:
            return self._vllm_error(400, "Bad Request", "Expecting value: line 1 column 1 (char 0)")
        if served is None or body.get("model") not in (None, served.name):
            return self._vllm_error(404, "NotFoundError", f"The model `{body.get('model')}` does not exist.")
        if wait := self._over_capacity():
            return self._error("openai", 429, headers={"retry-after-ms": str(max(1, round(wait * 1000)))})
        if self.latency:
            await asyncio.sleep(self.latency)
        outcome = self._outcome(body, "openai", _digest(raw))
        if isinstance(outcome, Fault):
            if outcome.kind == "reset":
                request.transport.close()
                return web.Response(status=500)
            if outcome.kind == "hang":
                await asyncio.sleep(outcome.seconds)
            elif outcome.kind == "empty":
                return web.json_response({"id": "pooling-empty", "object": "list", "data": []})
            else:
                return self._fault(outcome, "openai", body)
        prompts = pooling_prompts(body, served.tokenizer)
        for ids in prompts:
            if len(ids) > served.max_model_len:
                return self._vllm_error(400, "BadRequestError", (
                    f"This model's maximum context length is {served.max_model_len} tokens. However, your "
                    f"prompt contains {len(ids)} input tokens (parameter=input_tokens, value={len(ids)})"))
        rewards = [fake_reward(served.weights or served.root, ids) for ids in prompts]
        if body.get("use_activation") is not False or served.old_vllm:  # the default of one-label heads
            rewards = [0.5 * (1 + math.tanh(r / 2)) for r in rewards]  # (a sigmoid that cannot overflow)
        tokens = sum(len(ids) for ids in prompts)
        entries = [{"index": i, "object": "pooling", "data": [r]} for i, r in enumerate(rewards)]
        if len(self.pooling_calls()) in served.decoys:  # a proxy that merged another answer into this one
            entries.insert(0, {"index": len(entries), "object": "pooling", "data": [fake_reward("decoy", prompts[0])]})
        return web.json_response({
            "id": self._new_id("pooling-"), "object": "list", "created": int(time.time()), "model": served.name,
            "data": entries,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                      "prompt_tokens_details": None},
        })

    def _vllm_error(self, status: int, kind: str, message: str) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        return web.json_response(body, status=status)

    # -- OpenAI

    async def _openai_chat(self, request: web.Request) -> web.Response:
        return await self._model_call(request, "openai")

    async def _openai_upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        data = upload.file.read()
        file_id = self._new_id("file-")
        self.files[file_id] = data
        request[CALL].body = {"purpose": form["purpose"], "filename": upload.filename, "bytes": len(data)}
        return web.json_response(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": upload.filename,
                "purpose": form["purpose"],
                "status": "processed",
            }
        )

    async def _openai_file(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["id"])
        if data is None:
            return self._error("openai", 404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _openai_batch_create(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        lines = self.files.get(body["input_file_id"], b"").decode().splitlines()
        items = [(line["custom_id"], line["body"]) for line in map(json.loads, filter(None, lines))]
        if not items:
            return self._error("openai", 400)
        if self.refused_creates:
            return self._fault(self.refused_creates.popleft(), "openai", {})
        batch = self._create_batch("openai", items, "batch_")
        batch.input_file_id = body["input_file_id"]
        batch.metadata = body.get("metadata")
        return await self._created(request, "openai", self._openai_batch_object(batch, ended=False))

    async def _openai_batch_get(self, request: web.Request) -> web.StreamResponse:
        batch = self._batch(request, "openai")
        if batch is None:
            return self._error("openai", 404, message=f"No batch found with id '{request.match_info['id']}'.")
        return await self._status(request, self._openai_batch_object(batch, ended=self._poll(batch)))

    async def _openai_batch_list(self, request: web.Request) -> web.Response:
        """GET /batches: newest first, `limit` (1-100, default 20) from after the `after` id."""
        listed = self._listed("openai")
        after = request.query.get("after")
        start = next((i + 1 for i, b in enumerate(listed) if b.id == after), 0) if after else 0
        page = listed[start : start + min(int(request.query.get("limit", 20)), 100)]
        return web.json_response({
            "object": "list", "data": [self._openai_batch_object(b, ended=self._ended(b)) for b in page],
            "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
            "has_more": start + len(page) < len(listed),
        })

    async def _openai_batch_cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request, "openai")
        if batch is None:
            return self._error("openai", 404)
        batch.cancelled = True
        return web.json_response({**self._openai_batch_object(batch, ended=False), "status": "cancelling"})

    def _openai_batch_object(self, batch: FakeBatch, ended: bool) -> dict[str, Any]:
        states = self._states(batch)
        if ended and batch.output_file_id is None and batch.error_file_id is None:
            self._write_openai_results(batch)
        status = "in_progress"
        if ended:
            status = "cancelled" if batch.cancelled else "expired" if states["expired"] else "completed"
        now = int(time.time())
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created_at),
            "in_progress_at": now,
            "expires_at": int(batch.created_at) + 86400,
            "completed_at": now if status == "completed" else None,
            "request_counts": {
                "total": len(batch.outcomes),
                "completed": states["succeeded"] if ended else 0,
                "failed": len(batch.outcomes) - states["succeeded"] if ended else 0,
            },
            "metadata": batch.metadata,
        }

    def _write_openai_results(self, batch: FakeBatch) -> None:
        """The output file (successes) and error file (errored, expired, cancelled) of a batch."""
        output: list[str] = []
        errors: list[str] = []
        for custom_id, outcome in batch.outcomes.items():
            line: dict[str, Any] = {"id": self._new_id("batch_req_"), "custom_id": custom_id}
            line["response"] = line["error"] = None
            state = _item_state(outcome, batch.cancelled)
            body = batch.bodies[custom_id]
            if state == "succeeded":
                def succeeded(reply: Reply | None, line: dict[str, Any] = line, body: dict[str, Any] = body) -> dict:
                    response = {"status_code": 200, "request_id": "req_fake"}
                    if reply is not None:
                        response["body"] = openai_completion(reply, body, self._new_id("chatcmpl-"))
                    return {**line, "response": response}
                output += _output_lines(outcome, succeeded, self._answer(outcome, body, "openai"))
                continue
            if state == "errored":
                status = _item_status(outcome)
                error = error_body("openai", status, body.get("model", ""))
                line["response"] = {"status_code": status, "request_id": "req_fake", "body": error}
            else:
                code = {"expired": "batch_expired", "canceled": "batch_cancelled"}[state]
                line["error"] = {"code": code, "message": f"This request was not executed: {code}."}
            errors.append(json.dumps(line))
        for lines, attr in ((output, "output_file_id"), (errors, "error_file_id")):
            if lines:
                file_id = self._new_id("file-")
                self.files[file_id] = "".join(line + "\n" for line in lines).encode()
                setattr(batch, attr, file_id)

    # -- Anthropic

    async def _anthropic_messages(self, request: web.Request) -> web.Response:
        return await self._model_call(request, "anthropic")

    async def _anthropic_batch_create(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        items = [(item["custom_id"], item["params"]) for item in body.get("requests", [])]
        if not items:
            return self._error("anthropic", 400)
        if self.refused_creates:
            return self._fault(self.refused_creates.popleft(), "anthropic", {})
        batch = self._create_batch("anthropic", items, "msgbatch_")
        return await self._created(request, "anthropic", self._anthropic_batch_object(request, batch, ended=False))

    async def _anthropic_batch_get(self, request: web.Request) -> web.StreamResponse:
        batch = self._batch(request, "anthropic")
        if batch is None:
            return self._error("anthropic", 404, message="Message batch not found.")
        return await self._status(request, self._anthropic_batch_object(request, batch, ended=self._poll(batch)))

    async def _anthropic_batch_list(self, request: web.Request) -> web.Response:
        """GET /v1/messages/batches: newest first, `limit` (1-1000, default 20) after `after_id`
        or before `before_id`."""
        listed = self._listed("anthropic")
        ids = [b.id for b in listed]
        limit = min(int(request.query.get("limit", 20)), 1000)
        if "before_id" in request.query:
            end = ids.index(request.query["before_id"]) if request.query["before_id"] in ids else 0
            page, more = listed[max(0, end - limit) : end], end - limit > 0
        else:
            after = request.query.get("after_id")
            start = ids.index(after) + 1 if after in ids else 0
            page, more = listed[start : start + limit], start + limit < len(listed)
        return web.json_response({
            "data": [self._anthropic_batch_object(request, b, ended=self._ended(b)) for b in page],
            "has_more": more, "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
        })

    async def _anthropic_batch_cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request, "anthropic")
        if batch is None:
            return self._error("anthropic", 404)
        batch.cancelled = True
        batch_object = self._anthropic_batch_object(request, batch, ended=False)
        return web.json_response({**batch_object, "processing_status": "canceling"})

    async def _anthropic_batch_results(self, request: web.Request) -> web.Response:
        batch = self._batch(request, "anthropic")
        if batch is None:
            return self._error("anthropic", 404)
        lines: list[str] = []
        for custom_id, outcome in batch.outcomes.items():
            state = _item_state(outcome, batch.cancelled)
            body = batch.bodies[custom_id]
            if state == "succeeded":
                def succeeded(reply: Reply | None, custom_id: str = custom_id, body: dict[str, Any] = body) -> dict:
                    result: dict[str, Any] = {"type": "succeeded"}
                    if reply is not None:
                        result["message"] = anthropic_message(reply, body, self._new_id("msg_"))
                    return {"custom_id": custom_id, "result": result}
                lines += _output_lines(outcome, succeeded, self._answer(outcome, body, "anthropic"))
                continue
            result: dict[str, Any] = {"type": state}
            if state == "errored":
                result["error"] = error_body("anthropic", _item_status(outcome), body.get("model", ""))
            lines.append(json.dumps({"custom_id": custom_id, "result": result}))
        return web.Response(text="".join(line + "\n" for line in lines), content_type="application/binary")

    def _anthropic_batch_object(self, request: web.Request, batch: FakeBatch, ended: bool) -> dict[str, Any]:
        states = self._states(batch)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            counts.update(states)
        else:
            counts["processing"] = len(batch.outcomes)
        now = _rfc3339(time.time())
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts,
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + 86400),
            "ended_at": now if ended else None,
            "cancel_initiated_at": now if batch.cancelled else None,
            "archived_at": None,
            "results_url": f"{request.url.origin()}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    # -- Gemini

    async def _google_model_method(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if method == "generateContent":
            return await self._model_call(request, "google")
        if method == "batchGenerateContent" and self.batches_served:
            return await self._google_batch_create(request)
        return self._error("google", 404, model=request.match_info["model"])

    async def _google_upload_start(self, request: web.Request) -> web.Response:
        """Step one of the SDK's resumable upload: the URL to send the bytes to."""
        await self._json(request)
        session = self._new_id("upload-")
        return web.Response(headers={"X-Goog-Upload-URL": f"{request.url.origin()}/upload-session/{session}",
                                     "X-Goog-Upload-Status": "active"})

    async def _google_upload_finish(self, request: web.Request) -> web.Response:
        data = await request.read()
        name = f"files/{self._new_id('file-')}"
        self.files[name] = data
        request[CALL].body = {"filename": name, "bytes": len(data)}
        return web.json_response(
            {"file": {"name": name, "mimeType": "application/jsonl", "sizeBytes": str(len(data)), "state": "ACTIVE"}},
            headers={"X-Goog-Upload-Status": "final"},
        )

    async def _google_download(self, request: web.Request) -> web.Response:
        data = self.files.get(f"files/{request.match_info['id']}")
        if data is None:
            return self._error("google", 404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _google_batch_create(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        model = request.match_info["model"]
        source = body.get("batch", {}).get("inputConfig", {}).get("fileName", "")
        lines = [json.loads(line) for line in self.files.get(source, b"").decode().splitlines() if line.strip()]
        items = [(line["key"], {**line["request"], "model": model}) for line in lines]
        if not items:
            return self._error("google", 400)
        if self.refused_creates:
            return self._fault(self.refused_creates.popleft(), "google", {})
        batch = self._create_batch("google", items, "gbatch-")
        batch.input_file_id = source
        batch.display_name = body.get("batch", {}).get("displayName")
        return await self._created(request, "google", self._google_batch_object(batch, ended=False))

    async def _google_batch_get(self, request: web.Request) -> web.StreamResponse:
        batch = self._batch(request, "google")
        if batch is None:
            return self._error("google", 404, message="Requested entity was not found.")
        return await self._status(request, self._google_batch_object(batch, ended=self._poll(batch)))

    async def _google_batch_list(self, request: web.Request) -> web.Response:
        """GET /v1beta/batches: `pageSize` operations (default 20) from `pageToken` on, newest first."""
        listed = self._listed("google")
        start = int(request.query.get("pageToken") or 0)
        end = start + int(request.query.get("pageSize", 20))
        answer: dict[str, Any] = {"operations": [self._google_batch_object(b, ended=self._ended(b))
                                                 for b in listed[start:end]]}
        if end < len(listed):
            answer["nextPageToken"] = str(end)
        return web.json_response(answer)

    async def _google_batch_cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request, "google")
        if batch is None:
            return self._error("google", 404)
        batch.cancelled = True
        return web.json_response({})

    def _google_batch_object(self, batch: FakeBatch, ended: bool) -> dict[str, Any]:
        """The batch's long-running operation. An expired batch (any item Fault.expired) has no
        results, as on Gemini; the SDK reads the results file from metadata.output, the REST
        docs from response: both are sent."""
        states = self._states(batch)
        state = "RUNNING"
        if ended:
            state = "CANCELLED" if batch.cancelled else "EXPIRED" if states["expired"] else "SUCCEEDED"
        if state == "SUCCEEDED" and batch.output_file_id is None:
            batch.output_file_id = self._write_google_results(batch)
        total, done = len(batch.outcomes), len(batch.outcomes) if ended else 0
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{next(iter(batch.bodies.values()))['model']}",
            **({"displayName": batch.display_name} if batch.display_name else {}),
            "state": f"BATCH_STATE_{state}", "createTime": _rfc3339(batch.created_at),
            "batchStats": {"requestCount": str(total), "pendingRequestCount": str(total - done),
                           "successfulRequestCount": str(states["succeeded"] if ended else 0),
                           "failedRequestCount": str(done - states["succeeded"] if ended else 0)},
        }
        operation: dict[str, Any] = {"name": f"batches/{batch.id}", "metadata": metadata, "done": ended}
        if state == "SUCCEEDED":
            metadata["output"] = {"responsesFile": batch.output_file_id}
            operation["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                                              "GenerateContentBatchOutput", "responsesFile": batch.output_file_id}
        return operation

    def _write_google_results(self, batch: FakeBatch) -> str:
        """The output file: one line per item, in input order, `response` or `error`."""
        lines: list[str] = []
        for key, outcome in batch.outcomes.items():
            body = batch.bodies[key]
            if _item_state(outcome, False) == "succeeded":
                def succeeded(reply: Reply | None, key: str = key, body: dict[str, Any] = body) -> dict:
                    if reply is None:
                        return {"key": key}
                    return {"key": key, "response": google_response(reply, body, self._new_id("resp-"))}
                lines += _output_lines(outcome, succeeded, self._answer(outcome, body, "google"))
            else:
                error = error_body("google", _item_status(outcome), body.get("model", ""))
                lines.append(json.dumps({"key": key, **error}))
        name = f"files/{self._new_id('batch-out-')}"
        self.files[name] = "".join(line + "\n" for line in lines).encode()
        return name


def _sent_key(call: Call) -> str:
    return (call.headers.get("x-api-key") or call.headers.get("x-goog-api-key")
            or call.headers.get("authorization", "").removeprefix("Bearer "))


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---------------------------------------------------------------- pytest fixtures
# Import into tests/conftest.py:  from fake_api import fake_api, fake_api_thread  # noqa: F401


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAPI]:
    """A running FakeAPI on the test's event loop; reconfigure it through its attributes."""
    async with FakeAPI() as api:
        yield api


@pytest.fixture
def fake_api_thread() -> Iterator[FakeAPI]:
    """A FakeAPI serving from its own thread, for sync tests and CLI runs (in-process or subprocess)."""
    with FakeAPI().run_in_thread() as api:
        yield api


# ---------------------------------------------------------------- as a process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake OpenAI + Anthropic API until killed.")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of calls failing 429/500/503")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge", choices=("hash", "first", "label", "calibrated", "slow"), default="hash")
    parser.add_argument("--data", type=Path, help="RMB_dataset folder, for --judge label and calibrated")
    parser.add_argument("--capacity-rpm", type=float, help="answer 429 above this request rate")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    parser.add_argument("--api-key", help="answer 401 to any other key")
    parser.add_argument("--no-usage", action="store_true", help="answers carry no usage object")
    parser.add_argument("--usage-scale", type=float, default=1.0, help="bill this many tokens per counted one")
    parser.add_argument("--retry-after", help="answer every model call 429 with this retry-after header")
    parser.add_argument("--log", type=Path, help="append one line per model call received (its prompt_digest)")
    parser.add_argument("--timeline", type=Path,
                        help="append 'arrived ended status' (time.monotonic, shared by local processes) per call")
    parser.add_argument("--served-model", metavar="NAME", help="also serve a reward model as vLLM does, under NAME")
    parser.add_argument("--root", help="with --served-model: the model's folder (its tokenizer), as GET /v1/models says")
    parser.add_argument("--rejected-share", type=float, default=0.0, help="share of prompts always rejected (400)")
    parser.add_argument("--failing-share", type=float, default=0.0, help="share of prompts always failing (500)")
    args = parser.parse_args(argv)
    if args.judge in ("label", "calibrated"):
        if args.data is None:
            parser.error(f"--judge {args.judge} needs --data RMB_DATASET_DIR")
        from rmb_judge.benchmarks import get

        records = get("rmb").load(args.data).records
        responder = label_judge(records) if args.judge == "label" else calibrated_judge(records)
    else:
        responder = {"hash": hash_judge, "first": first_pick, "slow": slow_to_conclude}[args.judge]
    api = FakeAPI(
        responder,
        fault_rate=args.fault_rate,
        seed=args.seed,
        capacity_rpm=args.capacity_rpm,
        latency=args.latency,
        required_key=args.api_key,
        port=args.port,
        usage=not args.no_usage,
        usage_scale=args.usage_scale,
        rejected_share=args.rejected_share,
        failing_share=args.failing_share,
    )
    if args.retry_after:
        api.responder = lambda body, wire: Fault.http(429, retry_after_raw=args.retry_after)
    if args.log:
        api.log = args.log.open("a", buffering=1)
    if args.timeline:
        api.timeline = args.timeline.open("a", buffering=1)
    if args.served_model:
        api.served = ServedRewardModel(args.served_model, args.root or args.served_model)

    async def serve() -> None:
        print(await api.start(), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
