"""What the judge is shown: a presentation rendered with its template into the requests whose
answers decide its verdict, each with its cache key.

A pairwise template shows both answers of a pair in one request; a pointwise template rates
each shown answer in its own request (A then B); a ranking template shows every answer of a
ranking in one request; a rating template rates its one answer. A template with a follow-up
turn (`follow_up`) may add a second request once the first reply is known (`follow_up`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .cache import request_key
from .errors import UsageError
from .judgments import Presentation
from .providers.base import ChatRequest
from .templates import Template


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
    """The (cache key, request) pairs whose answers decide this presentation's verdict."""
    record = presentation.record
    conversation, goal = record.conversation, record.goal
    shown = [answer.text for answer in presentation.shown]
    if template.kind == "pairwise":
        message_sets = [template.render_pair(conversation, goal, shown[0], shown[1])]
    elif template.kind == "ranking":
        if len(shown) != template.slots:
            raise UsageError(f"--template {template.name}: shows {template.slots} answers, but a ranking of "
                             f"{record.subset} {record.uid} has {len(shown)}")
        message_sets = [template.render_many(conversation, goal, shown)]
    else:  # pointwise (each answer of a pair) and rating (its one answer)
        message_sets = [template.render_single(conversation, goal, text) for text in shown]
    return tuple(keyed(template, settings, messages) for messages in message_sets)


def keyed(template: Template, settings: RequestSettings, messages: tuple[tuple[str, str], ...]
          ) -> tuple[str, ChatRequest]:
    """A request of these messages under the settings, and its cache key."""
    request = ChatRequest(
        model=settings.model,
        messages=messages,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        json_mode=template.json_mode,
        top_logprobs=settings.top_logprobs,
    )
    return request_key(settings.provider, request, template.key_sha256), request


def follow_up(template: Template, settings: RequestSettings, first: ChatRequest, reply: str
              ) -> tuple[str, ChatRequest]:
    """The template's follow-up turn after `reply` to `first`: the same messages, the reply as
    the assistant's turn, then the follow-up text as the user's. Its key covers the reply."""
    assert template.follow_up
    return keyed(template, settings, (*first.messages, ("assistant", reply), ("user", template.follow_up)))
