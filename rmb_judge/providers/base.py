"""The one interface every hosted judge provider implements.

Providers only translate a `ChatRequest` into an SDK call and the SDK's answer into a
`ChatResponse`. Retrying, rate limiting, concurrency and caching live in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral chat request. Everything here except nothing is part of the cache key."""

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content); role in system/user/assistant
    max_tokens: int = 1024
    temperature: float | None = 0.0  # None: provider default (reasoning models)
    json_mode: bool = False  # ask for a JSON object (structured output) where the provider can

    def canonical(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [list(m) for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "json_mode": self.json_mode,
        }


@dataclass
class ChatResponse:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    finish_reason: str | None = None  # normalised: stop | length | refusal | content_filter
    refusal: bool = False  # the provider itself signalled a refusal
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Provider(Protocol):
    name: str  # "openai", "anthropic", "mock"
    model: str
    simulated: bool  # True only for the offline mock judge

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        """One request; raise the SDK's own exceptions (the engine classifies them)."""
        ...

    async def aclose(self) -> None: ...
