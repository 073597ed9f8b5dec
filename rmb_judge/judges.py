"""Judge specs (`openai:MODEL`, `anthropic:MODEL`, `hf:PATH_OR_ID`, `mock`, ...) and the one
registry of judge kinds behind them.

A judge kind owns, in one place: its spec prefix, the command-line flags it takes (and the
flag group it defines), the install extra it needs (bin/rmb-judge learns it through extras.py,
which reads `prefix`/`name` and `extra` off these classes and the providers' without importing
them), how `estimate` reckons its work, and the factory of its run pipeline (pipeline.py).
Hosted generative judges are one kind per registered provider (providers/: dropping a module
there adds one); reward models are `hf:` (local) and `vllm-rm:` (served).

A kind names its pipeline class and its estimate function by module and name
("rmb_judge.generative:GenerativeJudge"), imported when a run or an estimate needs them, as a
plugin registry does: parsing a command line imports no SDK, torch or engine, and the modules
that implement a kind depend on this one, never the other way round.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import UsageError
from .providers import registry
from .providers.base import Provider, RoundRobin


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its names and argparse's keywords."""

    names: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class FlagGroup:
    """Flags shown under one title in --help (a kind defines it; several kinds may take them)."""

    title: str
    flags: tuple[Flag, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(flag.names[0] for flag in self.flags)


# What every generative kind takes besides the run's engine flags (cli.py defines those,
# which reach the provider through the engine: ENGINE).
GENERATIVE = FlagGroup("generative judges", (
    Flag(("--template",), {"help": "prompt template name in prompts/ or a .toml path (default: the benchmark's, "
                                   "e.g. rmb for RMB)"}),
    Flag(("--order",), {"choices": ("random", "fixed", "both"),
                        "help": "answer order shown to the judge (default: the benchmark's; RMB random, seeded; "
                                "JudgeBench both)"}),
    Flag(("--samples",), {"metavar": "K", "kind": "positive_int", "default": 1,
                          "help": "majority vote over K samples; raising K later pays only for new samples "
                                  "if --temperature is unchanged"}),
    Flag(("--temperature",), {"kind": "nonnegative_float",
                              "help": "sampling temperature (default 0, or 1 with --samples > 1; not accepted by "
                                      "anthropic: judges nor OpenAI reasoning models: o1, o3, o4-mini, gpt-5, ...)"}),
    Flag(("--max-tokens",), {"kind": "positive_int",
                             "help": "judge answer length cap (default: the template's, else 2048)"}),
    Flag(("--verdict-probs",), {"action": "store_true",
                                "help": "ask for token logprobs and read P(A), P(B), P(tie) at the verdict token: "
                                        "Brier score, calibration and AUROC in the summary (openai:, google: judges; "
                                        "templates of style rmb or json, e.g. --template verdict)"}),
    Flag(("--base-url",), {"action": "append", "default": [], "metavar": "URL",
                           "help": "API base URL; repeat (or comma-separate) to spread requests over replicas "
                                   "(vllm-rm: the servers)"}),
    Flag(("--equivalent-endpoint",), {"action": "append", "default": [], "metavar": "URL",
                                      "help": "also use cached answers that came from this endpoint (e.g. a proxy "
                                              "in front of the official API); repeat (or comma-separate) for several"}),
    Flag(("--batch",), {"action": "store_true", "help": "use the provider's batch API (half price, slower)"}),
    Flag(("--price",), {"kind": "price", "metavar": "IN,OUT",
                        "help": "USD per million input and output tokens at this endpoint (default: genai-prices' "
                                "published price on the provider's official API, unknown elsewhere); 'published' "
                                "takes the published price anywhere, e.g. behind a proxy to the official API"}),
))
REWARD_MODELS = FlagGroup("reward models (hf:, vllm-rm:)", (
    Flag(("--max-length",), {"kind": "positive_int",
                             "help": "tokens per scored text, cut from the left (default: the model's limit)"}),
    Flag(("--batch-tokens",), {"kind": "positive_int", "default": 16384,
                               "help": "tokens computed per batch, padding included (default 16384)"}),
    Flag(("--devices",), {"help": "a model copy per comma-separated entry, + shards one copy over GPUs: "
                                  "cuda:0,cuda:1 (two copies), cuda:0+cuda:1 (one over two) (default: every GPU, "
                                  "grouped if the model does not fit on one; else CPU)"}),
    Flag(("--trust-remote-code",), {"action": "store_true", "help": "allow the model's own code (e.g. ArmoRM)"}),
    Flag(("--reward-field",), {"help": "output attribute holding the reward (e.g. score for ArmoRM)"}),
    Flag(("--revision",), {"help": "model revision (hub models; vllm-rm: the tokenizer's)"}),
    Flag(("--tokenizer",), {"metavar": "PATH_OR_ID",
                            "help": "vllm-rm: the tokenizer to render with (default: the model the server reports)"}),
))
# the run's engine flags (cli.py defines them), and the run flags only generative judges use
ENGINE = frozenset({"--concurrency", "--rpm", "--tpm", "--max-retries", "--timeout", "--max-cost", "--max-wait",
                    "--grace", "--poll-interval", "--confirm-above", "--yes"})
GENERATIVE_RUN = frozenset({"--max-unparsed"})


class JudgeKind:
    """A kind of judge: what a spec prefix means for the command line, installs, estimates and runs."""

    prefix: ClassVar[str]
    form: ClassVar[str]  # how a spec of this kind is written, e.g. "hf:PATH_OR_ID"
    title: ClassVar[str]  # in messages: "a generative judge", ...
    extra: ClassVar[str | None] = None  # the install extra it needs (pyproject.toml)
    scalar: ClassVar[bool] = False  # answers with a reward per answer, not a verdict
    groups: ClassVar[tuple[FlagGroup, ...]] = ()  # the flag groups it defines
    takes: ClassVar[frozenset[str]] = frozenset()  # every kind-specific flag it takes
    pipeline_class: ClassVar[str]  # "module:Class", built with (RunConfig, Benchmark): a pipeline.Pipeline
    estimate_function: ClassVar[str]  # "module:function" of (RunConfig, Benchmark): `estimate`'s dict

    def pipeline(self, config: Any, benchmark: Any) -> Any:
        """The run's pipeline (pipeline.Pipeline) for a RunConfig and a Benchmark."""
        return _named(self.pipeline_class)(config, benchmark)

    def estimate(self, config: Any, benchmark: Any) -> dict[str, Any]:
        """What `rmb-judge estimate` says of a run of this judge."""
        result: dict[str, Any] = _named(self.estimate_function)(config, benchmark)
        return result


def _named(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class GenerativeKind(JudgeKind):
    """A hosted (or OpenAI-compatible, or the offline mock) judge that reads and states a verdict."""

    form = "NAME:MODEL"
    title = "a generative judge"
    groups = (GENERATIVE,)
    takes = GENERATIVE.names | ENGINE | GENERATIVE_RUN

    pipeline_class = "rmb_judge.generative:GenerativeJudge"
    estimate_function = "rmb_judge.estimate:generative"

    def __init__(self, provider: type[Provider]):
        self.provider = provider
        self.prefix = provider.name  # type: ignore[misc]
        self.extra = provider.extra  # type: ignore[misc]
        self.form = "mock" if provider.simulated else f"{provider.name}:MODEL"  # type: ignore[misc]


class LocalRewardKind(JudgeKind):
    """`hf:PATH_OR_ID`: a transformers reward model run here (scalar.py, local_rm.py)."""

    prefix = "hf"
    form = "hf:PATH_OR_ID"
    title = "a local reward model (hf:)"
    extra = "local"
    scalar = True
    groups = (REWARD_MODELS,)
    takes = REWARD_MODELS.names - {"--tokenizer"}
    pipeline_class = "rmb_judge.scalar:LocalRewardJudge"
    estimate_function = "rmb_judge.scalar:estimate"


class ServedRewardKind(JudgeKind):
    """`vllm-rm:MODEL`: a reward model served by vLLM, scored through the engine (served_rm.py)."""

    prefix = "vllm-rm"
    form = "vllm-rm:MODEL"
    title = "a served reward model (vllm-rm:)"
    scalar = True
    groups = (REWARD_MODELS,)
    takes = frozenset({"--base-url", "--concurrency", "--rpm", "--max-retries", "--timeout", "--max-wait", "--grace",
                       "--max-length", "--trust-remote-code", "--revision", "--tokenizer"})
    pipeline_class = "rmb_judge.served_rm:ServedRewardJudge"
    estimate_function = "rmb_judge.scalar:estimate"


@functools.cache
def kinds() -> dict[str, JudgeKind]:
    """Every judge kind by its spec prefix: one per provider, then the reward models."""
    found: dict[str, JudgeKind] = {name: GenerativeKind(cls) for name, cls in registry().items()}
    for kind in (LocalRewardKind(), ServedRewardKind()):
        found[kind.prefix] = kind
    return found


def flag_groups() -> list[FlagGroup]:
    """Every kind's flag groups, each once, for the command line."""
    return list({group.title: group for kind in kinds().values() for group in kind.groups}.values())


def kind_flags() -> frozenset[str]:
    """Every flag some judge kinds take and others do not."""
    return frozenset().union(*(kind.takes for kind in kinds().values()))


@dataclass(frozen=True)
class JudgeSpec:
    spec: str
    provider: str  # the kind's prefix: a provider's name, or a reward model's
    model: str

    @property
    def kind(self) -> JudgeKind:
        return kinds()[self.provider]

    @property
    def scalar(self) -> bool:
        return self.kind.scalar

    @property
    def served(self) -> bool:
        return isinstance(self.kind, ServedRewardKind)

    @property
    def simulated(self) -> bool:
        return not self.scalar and self.provider_class.simulated

    @property
    def provider_class(self) -> type[Provider]:
        """The generative provider's class, for its facts (no SDK is imported)."""
        return registry()[self.provider]


def spec_forms() -> str:
    forms = [kind.form for kind in kinds().values() if kind.form != "mock"]
    return ", ".join([*forms, "mock"])


def parse_spec(spec: str) -> JudgeSpec:
    if spec == "mock" or spec.startswith("mock:"):
        return JudgeSpec(spec, "mock", spec.partition(":")[2] or "mock")
    provider, sep, model = spec.partition(":")
    if not sep or not model or provider not in kinds():
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
