"""A run's pipeline, whatever the judge: plan -> answers -> verdicts.

- plan (`Plan`): the benchmark's records -> their judgments -> the presentations (units)
  judged, in dataset order, and the answers each needs, by answer key (a request key and
  sample, or a reward's text digest). Pure: the same data, selection and judge give the same
  plan. A unit may come to need one more answer while the run goes (a template's follow-up
  turn, known once the first reply is): `Plan.need` adds it and tells the run.
- answers: what the cache holds, then the rest from their source (the engine live or through
  a batch API, a local model, a served model), each reported as it arrives.
- verdicts: a unit's verdict once its answers are in, as its judge kind reads them.

A judge kind (judges.py) makes one `Pipeline` per run; the session (session.py) drives it and
keeps what every run shares: signals, the live view, --precision rounds, scores, the run folder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .judgments import Presentation
from .summary import Settings

if TYPE_CHECKING:
    from .benchmark import Benchmark
    from .cache import Cache
    from .config import RunConfig
    from .judgments import Judged
    from .records import Dataset
    from .summary import Usage
    from .templates import Template


@dataclass
class Plan:
    """The units a run judges (presentations, in dataset order) and the answers each needs."""

    units: Sequence[Presentation]
    needs: list[list[Hashable]]  # per unit: its answers' keys (a follow-up adds one)
    # told of an answer a unit came to need while the run goes: (key, units)
    on_need: Callable[[Hashable, list[int]], None] = field(default=lambda key, units: None, repr=False)
    # per unit: the answers it needs whatever the answers say (its first turns): what a
    # --precision sample is allocated and counted by, the same whatever the cache holds
    first: list[tuple[Hashable, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.first = [tuple(keys) for keys in self.needs]

    def need(self, key: Hashable, units: list[int]) -> None:
        """These units need one more answer (a follow-up turn's)."""
        for index in units:
            self.needs[index].append(key)
        self.on_need(key, units)


class AnswerCallback(Protocol):
    def __call__(self, key: Hashable) -> None: ...


@dataclass
class Status:
    """How a pipeline's answering went: why it stopped early (None: it did not), what was
    sent, and what the cache could not keep."""

    stopped_reason: str | None = None
    detail: str | None = None  # why, in a sentence
    sent_anything: bool = False
    lookups: int = 0  # answers looked up in the cache
    hits: int = 0  # of those, found
    requests: int = 0  # requests sent (or answers scored)
    unsaved: list[dict[str, Any]] = field(default_factory=list)  # answers neither the cache nor its side file took


class Pipeline(Protocol):
    """A judge kind's part of a run (judges.JudgeKind.pipeline makes it). Called in this order:
    prepare, (probe while the data loads), plan, lookup, before_sending, fetch (once, or once per
    --precision round), then verdict as answers arrive, and status, report, aclose at the end;
    stop and metrics at any time after lookup."""

    settings: Settings  # what the run is (final once `prepare` returned)
    progress_rows: str  # what the live view counts: "comparisons" or "answers"

    async def prepare(self) -> None:
        """Everything that can be checked before the data loads (keys, template, model)."""

    def probe(self) -> Awaitable[list[str | None]] | None:
        """Reachability of the endpoints, checked while the data loads (None: nothing to check)."""

    def plan(self, dataset: Dataset) -> Plan: ...

    def lookup(self, cache: Cache, on_answer: AnswerCallback) -> int:
        """Answer what the cache holds (reporting each through `on_answer`); return how many
        answers are still to get."""

    async def before_sending(self, cache: Cache, probe: Awaitable[list[str | None]] | None) -> None:
        """Last checks before the first request or forward pass."""

    async def fetch(self, only: set[Hashable] | None = None) -> None:
        """Get the missing answers (those in `only` and the follow-ups they lead to, when
        given), reporting each through the lookup's `on_answer`."""

    def stop(self, reason: str) -> str:
        """Start nothing new; returns what the user is told is being waited for."""

    def verdict(self, index: int) -> Judged | None:
        """The unit's verdict, or None while any answer it needs is missing."""

    def metrics(self) -> dict[str, str]: ...

    def status(self) -> Status: ...

    def report(self, judged: list[Judged], indices: list[int]) -> tuple[Usage, list[str]]:
        """What this run sent and spent, and what the scores' answers cost; warnings."""

    async def aclose(self) -> None: ...


def settings_of(config: RunConfig, benchmark: Benchmark, template: Template | None) -> Settings:
    """The run's settings as summary.json records them (a reward model's have no template)."""
    task = config.task
    s = task.selection
    settings = Settings(
        sets=list(s.sets or benchmark.kinds) if "--sets" in benchmark.selection_flags else [],
        sections=list(s.sections or benchmark.goals) if "--sections" in benchmark.selection_flags else [],
        scenarios=list(s.scenarios), limit=s.limit, sample=s.sample, seed=s.seed, precision=task.precision,
        options={o.dest: benchmark.option(s, o.dest) for o in benchmark.options},
    )
    if template:
        settings.template = template.name
        settings.template_sha256 = template.sha256
        settings.template_kind = template.kind
        settings.verdict_style = template.style
        settings.order = "fixed" if template.kind == "pointwise" else task.order_for(benchmark)
        settings.samples = task.samples
        settings.temperature = task.temperature
        settings.max_tokens = task.max_tokens_for(template)
        settings.verdict_probs = task.verdict_probs
    else:
        settings.order = task.order_for(benchmark) if benchmark.scalar_orders else None
    return settings
