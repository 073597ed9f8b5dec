"""A run's configuration: what to judge (`Task`) apart from how to run it (`Execution`).

Two runs with equal tasks send the same requests and get the same scores; everything in
`Execution` changes only what is paid for, when, and where the results go.

Every default lives here, once: the dataclasses' field defaults are what the command line
offers (cli.py reads them) and what a run built in Python gets. Where the default depends on
the benchmark or the template (the order, the template, the answer length cap), the field is
None and `Task` resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .records import Selection

CONFIRM_ABOVE = 10.0  # USD: a run estimated to cost more asks first on a terminal (--confirm-above)
VIEW_PORT = 8765  # `rmb-judge view`: a fixed default, so a record's URL stays the same from one start to the next

if TYPE_CHECKING:
    from .benchmark import Benchmark
    from .judges import JudgeSpec
    from .templates import Template

MAX_TOKENS = 2048  # a judge answer's length cap, unless the template or --max-tokens says otherwise


# --verdict-probs: alternatives asked for at each token; the verdicts' few tokens (A, B, C) are
# all among the top 5 unless their probability is negligible
TOP_LOGPROBS = 5


@dataclass(frozen=True)
class LocalOptions:
    """Settings of reward models (`hf:`, `vllm-rm:` judges) that decide their rewards."""

    max_length: int | None = None
    batch_tokens: int = 16384
    devices: tuple[str, ...] | None = None
    trust_remote_code: bool = False
    reward_field: str | None = None
    revision: str | None = None
    tokenizer: str | None = None  # vllm-rm: where the tokenizer comes from (default: the server's model)


@dataclass(frozen=True)
class Task:
    """What to judge and how the judge is asked."""

    judge: JudgeSpec
    data: Path | None = None  # None: the benchmark's default data folder
    selection: Selection = field(default_factory=Selection)
    benchmark: str = "rmb"
    template: str | None = None  # None: the benchmark's default template
    order: str | None = None  # random | fixed | both; None: the benchmark's default
    samples: int = 1
    temperature: float | None = 0.0
    max_tokens: int | None = None  # None: the template's, else MAX_TOKENS
    precision: float | None = None  # --precision H: judge a growing stratified sample until overall's ±H
    verdict_probs: bool = False  # --verdict-probs: ask for token logprobs (TOP_LOGPROBS alternatives)
    local: LocalOptions = field(default_factory=LocalOptions)

    def order_for(self, benchmark: Benchmark) -> str:
        return self.order or benchmark.default_order

    def max_tokens_for(self, template: Template | None) -> int:
        return self.max_tokens or (template.max_tokens if template else None) or MAX_TOKENS

    def data_for(self, benchmark: Benchmark) -> Path:
        return self.data or benchmark.default_data_dir()


@dataclass(frozen=True)
class EngineConfig:
    """How requests are sent: limits, retries, budgets."""

    concurrency: int = 32
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 8
    timeout: float = 120.0
    offline: bool = False
    max_cost: float | None = None
    max_wait: float = 300.0  # a longer retry-after stops the run instead of hanging it
    backoff_initial: float = 1.0  # seconds before the first retry of a transient error


@dataclass(frozen=True)
class Execution:
    """How to run a task, and where its results go."""

    out: Path
    cache: Path = Path("cache")
    engine: EngineConfig = field(default_factory=EngineConfig)
    base_urls: tuple[str, ...] = ()
    equivalent_endpoints: tuple[str, ...] = ()  # whose cached answers also serve this run
    batch: bool = False
    # --price: (USD per million input tokens, per million output tokens), or "published" (the
    # provider's, wherever the endpoint); None: the published price on the official API only
    price: tuple[float, float] | str | None = None
    poll_interval: float = 30.0
    live: bool = False
    progress_interval: float = 10.0
    grace: float = 60.0  # seconds the first Ctrl-C waits for requests in flight
    replace: bool = False  # --out may hold another judge's or settings' run
    max_unparsed: float = 0.05  # more than this share unparsed or failed: a suspect run
    confirm_above: float | None = CONFIRM_ABOVE  # ask on a terminal before spending more (None: never)
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    task: Task
    execution: Execution
