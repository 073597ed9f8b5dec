"""Judge specs (`openai:MODEL`, `anthropic:MODEL`, `hf:PATH_OR_ID`, `mock`) and the
providers behind them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .errors import UsageError
from .providers.base import ChatRequest, ChatResponse, Provider
from .retry import ErrorKind

GENERATIVE = ("openai", "anthropic", "mock")


@dataclass(frozen=True)
class JudgeSpec:
    spec: str
    provider: str  # openai | anthropic | mock | hf
    model: str

    @property
    def scalar(self) -> bool:
        return self.provider == "hf"

    @property
    def simulated(self) -> bool:
        return self.provider == "mock"


def parse_spec(spec: str) -> JudgeSpec:
    if spec == "mock" or spec.startswith("mock:"):
        return JudgeSpec(spec, "mock", spec.partition(":")[2] or "mock")
    provider, sep, model = spec.partition(":")
    if not sep or not model or provider not in (*GENERATIVE, "hf"):
        raise UsageError(
            f"--judge {spec!r}: expected openai:MODEL, anthropic:MODEL, hf:PATH_OR_ID or mock"
        )
    return JudgeSpec(spec, provider, model)


def make_provider(judge: JudgeSpec, base_urls: list[str] | None = None) -> Provider:
    """The provider for a generative judge. Several base URLs (vLLM replicas) are used in
    turn, request by request."""
    if judge.provider == "mock":
        from .providers.mock import MockProvider

        return MockProvider()
    if judge.provider == "openai":
        from .providers.openai_provider import OpenAIProvider as cls
    elif judge.provider == "anthropic":
        from .providers.anthropic_provider import AnthropicProvider as cls
    else:
        raise UsageError(f"--judge {judge.spec}: not a generative judge")
    urls = base_urls or [None]
    providers = [cls(judge.model, base_url=url) for url in urls]
    return providers[0] if len(providers) == 1 else RoundRobin(providers)


class RoundRobin:
    """Spreads requests over several servers of the same model (e.g. vLLM replicas)."""

    simulated = False

    def __init__(self, providers: list[Provider]):
        self.providers = providers
        self.name = providers[0].name
        self.model = providers[0].model
        self._next = itertools.cycle(providers)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(e for p in self.providers for e in p.endpoints)

    def prepare(self) -> None:
        for provider in self.providers:
            provider.prepare()

    def classify(self, exc: BaseException) -> ErrorKind:
        return self.providers[0].classify(exc)

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        return await next(self._next).complete(request, timeout)

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()
