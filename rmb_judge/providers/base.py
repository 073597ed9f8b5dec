"""The one interface every hosted judge provider implements.

Providers translate a `ChatRequest` into an SDK call and the SDK's answer into a
`ChatResponse`, and own the facts of their API: the endpoint they talk to, the key they
need, and how their errors sort (`classify`). Retrying, rate limiting, concurrency and
caching live in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..retry import ErrorKind


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral chat request. Everything here is part of the cache key."""

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
    usage_reported: bool = True  # False: the server sent no usage; tokens were counted locally
    cost_usd: float | None = None  # what this answer cost, once priced (None: unknown)
    endpoint: str = ""  # where it came from (endpoints.normalize)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Provider(Protocol):
    name: str  # "openai", "anthropic", "mock"
    model: str
    simulated: bool  # True only for the offline mock judge

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints requests go to (several for replicas), as `endpoints.normalize` writes them."""
        ...

    def prepare(self) -> None:
        """Check what a request needs before anything is sent (the API key): raise
        FatalProviderError naming what is missing."""
        ...

    def classify(self, exc: BaseException) -> ErrorKind:
        """Sort one of this provider's errors (see retry.py)."""
        ...

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        """One request; raise the SDK's own exceptions (the engine sorts them with `classify`)."""
        ...

    async def aclose(self) -> None: ...
