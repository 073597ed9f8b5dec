"""From records to comparisons, and from comparisons to the judge requests they need.

A pairwise record is one comparison (chosen vs rejected); a Best-of-N record is one
comparison per loser (bon_best vs loser i). Each comparison is shown to the judge in one
or both orders; `AB` means the label-preferred answer is shown first, as Assistant A.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .cache import request_key
from .providers.base import ChatRequest
from .records import Answer, Record
from .templates import Template

ORDERS = ("random", "fixed", "both")


@dataclass(frozen=True)
class Comparison:
    record: Record
    loser_index: int | None  # Best-of-N only

    @property
    def preferred(self) -> Answer:
        return self.record.preferred

    @property
    def other(self) -> Answer:
        return self.record.others[self.loser_index or 0]


@dataclass(frozen=True)
class Presentation:
    """A comparison in one order: what the judge is shown as A and as B."""

    comparison: Comparison
    order: str  # "AB" = preferred first, "BA" = preferred second

    @property
    def shown(self) -> tuple[Answer, Answer]:
        c = self.comparison
        return (c.preferred, c.other) if self.order == "AB" else (c.other, c.preferred)


def comparisons_of(records: Iterable[Record]) -> list[Comparison]:
    result: list[Comparison] = []
    for record in records:
        if record.kind == "pairwise":
            result.append(Comparison(record, None))
        else:
            result.extend(Comparison(record, i) for i in range(len(record.others)))
    return result


def orders_for(comparison: Comparison, mode: str, seed: int) -> tuple[str, ...]:
    """`fixed`: preferred first; `both`: both orders; `random`: a coin flip seeded by
    --seed and the comparison itself, so reruns and subsets show the same order."""
    if mode == "fixed":
        return ("AB",)
    if mode == "both":
        return ("AB", "BA")
    record = comparison.record
    coin = hashlib.sha256(
        f"{seed}:{record.category_path}:{record.uid}:{comparison.loser_index}".encode()
    ).digest()[0]
    return ("AB",) if coin % 2 == 0 else ("BA",)


def presentations(comparisons: Iterable[Comparison], mode: str, seed: int) -> list[Presentation]:
    return [Presentation(c, order) for c in comparisons for order in orders_for(c, mode, seed)]


@dataclass(frozen=True)
class RequestSettings:
    provider: str
    model: str
    max_tokens: int
    temperature: float | None
    top_logprobs: int = 0  # --verdict-probs: token logprobs asked for, with this many alternatives


def requests_for(
    presentation: Presentation, template: Template, settings: RequestSettings
) -> tuple[tuple[str, ChatRequest], ...]:
    """The (cache key, request) pairs whose answers decide this presentation's verdict:
    one for a pairwise template, one per shown answer (A then B) for a pointwise one."""
    c = presentation.comparison
    conversation, goal = c.record.conversation, c.record.goal
    first, second = presentation.shown
    if template.kind == "pairwise":
        message_sets = [template.render_pair(conversation, goal, first.text, second.text)]
    else:
        message_sets = [
            template.render_single(conversation, goal, first.text),
            template.render_single(conversation, goal, second.text),
        ]
    result = []
    for messages in message_sets:
        request = ChatRequest(
            model=settings.model,
            messages=messages,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            json_mode=template.json_mode,
            top_logprobs=settings.top_logprobs,
        )
        result.append((request_key(settings.provider, request, template.key_sha256), request))
    return tuple(result)
