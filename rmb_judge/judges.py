"""Judge specs (`openai:MODEL`, `anthropic:MODEL`, `hf:PATH_OR_ID`, `mock`, ...) and the
providers behind them. Generative prefixes come from the provider registry; scalar reward
models (local or served) are listed here."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .providers import registry
from .providers.base import Provider, RoundRobin

SCALAR = ("hf", "vllm-rm")  # judges that give each answer a reward instead of comparing two
SERVED = ("vllm-rm",)  # scalar judges on a server: reached through --base-url and the engine


@dataclass(frozen=True)
class JudgeSpec:
    spec: str
    provider: str  # a provider's name, or a scalar prefix
    model: str

    @property
    def scalar(self) -> bool:
        return self.provider in SCALAR

    @property
    def served(self) -> bool:
        return self.provider in SERVED

    @property
    def simulated(self) -> bool:
        return not self.scalar and self.provider_class.simulated

    @property
    def provider_class(self) -> type[Provider]:
        """The generative provider's class, for its facts (no SDK is imported)."""
        return registry()[self.provider]


def spec_forms() -> str:
    forms = [f"{name}:MODEL" for name in registry() if name != "mock"]
    scalar = [f"{name}:MODEL" if name in SERVED else f"{name}:PATH_OR_ID" for name in SCALAR]
    return ", ".join([*forms, *scalar, "mock"])


def parse_spec(spec: str) -> JudgeSpec:
    if spec == "mock" or spec.startswith("mock:"):
        return JudgeSpec(spec, "mock", spec.partition(":")[2] or "mock")
    provider, sep, model = spec.partition(":")
    if not sep or not model or provider not in (*registry(), *SCALAR):
        raise UsageError(f"--judge {spec!r}: expected {spec_forms()}")
    return JudgeSpec(spec, provider, model)


def make_provider(judge: JudgeSpec, base_urls: list[str] | None = None, connections: int | None = None) -> Provider:
    """The provider for a generative judge, opening up to `connections` at once (default:
    the SDKs' 1,000). Several base URLs (vLLM replicas) are used in turn, request by request."""
    if judge.scalar:
        raise UsageError(f"--judge {judge.spec}: not a generative judge")
    cls = judge.provider_class
    urls: list[str | None] = [None] if judge.simulated or not base_urls else list(base_urls)
    providers = [cls(judge.model, base_url=url) for url in urls]
    for provider in providers:
        provider.connections = connections or provider.connections
    return providers[0] if len(providers) == 1 else RoundRobin(providers)
