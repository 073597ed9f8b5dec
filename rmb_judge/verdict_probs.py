"""Verdict probabilities from token logprobs: how sure a judge was of the verdict it wrote.

A provider whose API returns token logprobs (OpenAI-compatible chat completions asked for
`logprobs` and `top_logprobs`, vLLM's among them; Gemini asked for `responseLogprobs`) turns
the answer's tokens into `Token`s and keeps, with the answer, only the tokens that could carry
a verdict (`keep`): those whose letters read A, B, C or TIE (DRAW), case aside. For each, its
place in the answer's text and the log of the summed probability of the alternatives the API
listed there that read A, B and tie (C, TIE or DRAW). That is all a verdict probability needs,
it is small enough to cache with every answer, and it holds no other text of the answer or of
the alternatives.

The token stream is placed in the text by its bytes (the API's `bytes` where it gives them):
the text is found at the end of the stream, so tokens before it (a reasoning model's thinking,
which vLLM lists with the answer's) or after it (a stop token's text) are not the answer's.
Where a character split over tokens is named by replacement characters (vLLM's `bytes` are
its decoded text's), the text after its last non-ASCII character is placed instead, which
holds the verdict unless a non-ASCII character follows it.

`read` finds the token that states the final verdict (`verdicts.verdict_offsets`: the last
``[[A]]``-style token or JSON verdict value that reads as the verdict the text states, after
any reasoning) and gives P(A), P(B) and P(tie) there, normalized over the three: how likely
the judge was to write each verdict at that point, given what it wrote before. A verdict the
API's top N alternatives leave out counts 0 (it is below the least listed probability). A
verdict stated only in prose, or a token the stream does not place in the text, has none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .retry import without_secrets
from .verdicts import verdict_offsets

SIDES = ("A", "B", "tie")
STYLES = ("rmb", "json")  # verdict styles whose verdict is one token
Probs = tuple[float, float, float]  # P(A), P(B), P(tie): positional, as the verdict
_WORDS = {"A": "A", "B": "B", "C": "tie", "TIE": "tie", "DRAW": "tie"}
_NOT_LETTERS = re.compile(r"[^A-Za-z]+")


@dataclass(frozen=True)
class Token:
    """One generated token as an API reports it."""

    text: str
    logprob: float
    top: tuple[tuple[str, float], ...]  # the listed alternatives (text, logprob); the chosen one may be absent
    raw: bytes | None = None  # its UTF-8 bytes, where the API gives them (a character split over tokens)


def side(token: str) -> str | None:
    """The verdict a token reads as ("A", "B", "tie"), or None: its letters, case aside."""
    return _WORDS.get(_NOT_LETTERS.sub("", token).upper())


def keep(text: str, tokens: Sequence[Token]) -> list[dict[str, Any]]:
    """The tokens of `text` that read as a verdict: their character span in `text`, the verdict
    chosen, and per verdict the log of the listed alternatives' summed probability (absent:
    none listed). Empty when the stream cannot be placed in the text."""
    pieces = [t.raw if t.raw is not None else t.text.encode() for t in tokens]
    stream, content = b"".join(pieces), text.encode()
    shift, placed = (stream.rfind(content) if content else -1), 0  # tokens are placed from content byte `placed`
    if shift < 0:
        # A character split over tokens that the API names by replacement characters (vLLM
        # sends their `bytes` so) matches nothing: place the text after its last non-ASCII byte.
        placed = max((i + 1 for i, byte in enumerate(content) if byte >= 0x80), default=0)
        found = stream.rfind(content[placed:]) if placed < len(content) else -1
        if found < 0:
            return []
        shift = found - placed
    kept: list[dict[str, Any]] = []
    end = 0
    for token, piece in zip(tokens, pieces, strict=True):
        start, end = end, end + len(piece)
        chosen = side(token.text)
        if chosen is None or start < shift + placed or end > shift + len(content):
            continue
        listed = list(token.top)
        if token.text not in {alternative for alternative, _ in listed}:
            listed.append((token.text, token.logprob))
        masses: dict[str, list[float]] = {}
        for alternative, logprob in listed:
            if (verdict := side(alternative)) is not None:
                masses.setdefault(verdict, []).append(logprob)
        kept.append({
            "start": len(content[: start - shift].decode("utf-8", "ignore")),
            "end": len(content[: end - shift].decode("utf-8", "ignore")),
            "token": chosen,
            **{verdict: _log_sum(values) for verdict, values in masses.items()},
        })
    return kept


def scrubbed(text: str, kept: list[dict[str, Any]] | None, secrets: Sequence[str]
             ) -> tuple[str, list[dict[str, Any]] | None]:
    """`text` without `secrets` (`retry.without_secrets`: a key a server echoed), and its kept
    verdict tokens moved to their place in what is left (a secret replaced by a shorter word
    moves everything after it); a token inside a secret is dropped."""
    clean = without_secrets(text, secrets)
    if clean == text or not kept:
        return clean, kept
    moved = []
    for token in kept:
        start = len(without_secrets(text[: token["start"]], secrets))
        end = start + token["end"] - token["start"]
        if clean[start:end] == text[token["start"]: token["end"]]:
            moved.append({**token, "start": start, "end": end})
    return clean, moved


def _log_sum(logprobs: list[float]) -> float:
    top = max(logprobs)
    return top + math.log(sum(math.exp(x - top) for x in logprobs))


def read(text: str, kept: Sequence[dict[str, Any]] | None, style: str, verdict: str | None) -> Probs | None:
    """P(A), P(B), P(tie) at the token stating `verdict` (the verdict `text` states), or None
    when there is no such token with logprobs (no verdict, a prose verdict, no logprobs)."""
    if verdict is None or not kept:
        return None
    offsets = [offset for offset, reads in verdict_offsets(text, style) if reads == verdict]
    if not offsets:
        return None
    at = offsets[-1]
    token = next((k for k in kept if k["start"] <= at < k["end"] and k["token"] == verdict), None)
    if token is None:
        return None
    masses = [math.exp(token[s]) if isinstance(token.get(s), int | float) else 0.0 for s in SIDES]
    total = sum(masses)
    if total <= 0:
        return None
    return masses[0] / total, masses[1] / total, masses[2] / total


def mean(probs: Sequence[Probs]) -> Probs | None:
    """The mean of several verdicts' probabilities (votes), or None when there are none."""
    if not probs:
        return None
    return tuple(sum(p[i] for p in probs) / len(probs) for i in range(3))  # type: ignore[return-value]


def preferred(probs: Probs, order: str) -> tuple[float, float, float]:
    """P(the label-preferred answer wins), P(the other wins), P(tie), from positional
    probabilities of a presentation in `order` ("AB": the preferred answer shown first)."""
    a, b, tie = probs
    return (a, b, tie) if order == "AB" else (b, a, tie)


def right(presentations: Sequence[tuple[Probs | None, str]]) -> float | None:
    """P(the label-preferred answer is better) of one comparison, a tie counting half, averaged
    over its presentations (probabilities, order); None when any presentation has none."""
    shares = []
    for probs, order in presentations:
        if probs is None:
            return None
        wins, _, tie = preferred(probs, order)
        shares.append(wins + tie / 2)
    return sum(shares) / len(shares) if shares else None
