"""`summary.json`, typed: what a run writes and what `report` and `compare` read back, through
the same dataclasses. `to_json` and `from_json` are the only places that know its layout; a
summary written by an older version (fields missing) reads back with their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import DataError, UsageError
from .measures import Behaviour, Calibration


@dataclass
class Results:
    """What every answer behind the scores cost, whichever run or batch paid for it."""

    answers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens, read from the provider's prompt cache (billed less)
    cache_write_tokens: int = 0  # of input_tokens, written to it
    cost_usd: float | None = 0.0


@dataclass
class Usage:
    """What this invocation sent and spent (generative judges), or scored (reward models)."""

    requests: int = 0  # requests sent to the provider, retries included
    cache_hits: int = 0  # comparisons answered from the cache
    answered_elsewhere: int = 0  # answers another process sharing the cache paid for
    retries: int = 0
    rate_limited: int = 0
    connect_errors: int = 0
    failed: int = 0  # comparisons whose requests failed (incl. `rejected`)
    rejected: int = 0  # of those, rejected by the provider on their merits (too long)
    unparsed: int = 0
    refused: int = 0
    truncated: int = 0
    unread_votes: int = 0  # --samples K > 1: samples whose verdict could not be read
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens, read from the provider's prompt cache (billed less)
    cache_write_tokens: int = 0  # of input_tokens, written to it
    cost_usd: float | None = 0.0  # None: the price is unknown (see cost_method)
    unconfirmed_cost_usd: float = 0.0  # may have been billed for requests that timed out
    usage_counted_locally: int = 0  # answers whose server sent no usage
    unsaved_answers: int = 0  # answers the cache could not store
    results: Results = field(default_factory=Results)
    cost_method: str | None = None
    # local reward models
    answers_scored: int | None = None
    unique_answers: int | None = None
    truncated_inputs: int | None = None
    equal_rewards: int | None = None
    answers_per_second: float | None = None


@dataclass
class SectionCounts:
    n: int = 0  # records
    comparisons: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    unparsed: int = 0
    refused: int = 0
    failed: int = 0
    truncated: int = 0
    equal_rewards: int = 0


@dataclass
class ScenarioScore:
    category_path: str = ""
    set: str = ""  # the record kind (RMB: pairwise | bon)
    section: str = ""  # the goal (RMB: helpfulness | harmlessness)
    n: int = 0
    accuracy: float | None = None
    interval: list[float] | None = None  # 95%, of the accuracy
    population: int | None = None  # a --precision run: the scenario's records in the selection
    unparsed: int = 0
    refused: int = 0
    failed: int = 0
    truncated: int = 0


@dataclass
class Position:
    """How often the first-shown answer was picked, and how often two orders agree."""

    first_pick_rate: float | None = None
    first_pick_interval: list[float] | None = None
    by_section: dict[str, float] = field(default_factory=dict)
    by_section_intervals: dict[str, list[float]] = field(default_factory=dict)
    consistency: float | None = None
    consistency_interval: list[float] | None = None
    consistency_n: int = 0


@dataclass
class Agreement:
    """With --samples K > 1: how often all K votes agree, and the mean majority share."""

    samples: int = 0
    unanimous_rate: float | None = None
    unanimous_interval: list[float] | None = None
    mean_majority_share: float | None = None
    mean_majority_share_interval: list[float] | None = None


@dataclass
class Sampling:
    """A --precision run: the half-width it aimed at, what it reached, and how."""

    target: float = 0.0  # H
    z: float = 0.0  # the critical value of the scores' intervals: above 1.96, corrected for stopping early
    half_width: float | None = None  # of overall's 95% interval when it stopped
    reached: bool = False  # half_width <= target
    rounds: int = 0
    records: int = 0  # judged: the sample
    population: int = 0  # records in the selection
    requests_full: int = 0  # requests the whole selection needs (cached or not)
    requests_sample: int = 0  # requests the sample needed (cached or not)


@dataclass
class DataInfo:
    root: str = ""
    scenario_files_found: int = 0
    scenario_files_read: int = 0
    records: int = 0  # selected
    records_scored: int = 0
    comparisons_judged: int = 0
    comparisons_expected: int = 0


@dataclass
class Settings:
    """The task's settings as run (selection, template, sampling; the judge's endpoints)."""

    sets: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    limit: int | None = None
    sample: float | None = None
    seed: int = 0
    precision: float | None = None  # --precision H: a growing stratified sample, stopped at half-width H
    template: str | None = None
    template_sha256: str | None = None
    template_kind: str | None = None
    verdict_style: str | None = None
    order: str | None = None
    samples: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    verdict_probs: bool | None = None  # --verdict-probs: token logprobs asked for (part of each request)
    endpoints: list[str] = field(default_factory=list)
    model_identity: str | None = None  # a local reward model's files, hashed

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (a resumed run matches on all of it). A generative
        judge's answers are its endpoints' (the replicas in any order); a reward model's come
        from its identity (a served one's replicas are interchangeable: probed to agree)."""
        keep = ("sets", "sections", "scenarios", "limit", "sample", "seed", "template_sha256", "order",
                "samples", "temperature", "max_tokens", "verdict_probs", "model_identity")
        same = {k: getattr(self, k) for k in keep}
        if self.model_identity is None:
            same["endpoints"] = sorted(self.endpoints)
        return same


@dataclass
class Summary:
    judge: str
    benchmark: str = "rmb"
    simulated: bool = False
    complete: bool = False
    stopped_reason: str | None = None  # precision | budget | interrupted | fatal | wait | cache | error
    suspect: bool = False
    warnings: list[str] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    scores: dict[str, float | None] = field(default_factory=dict)
    # 95% [low, high] of each score (None where the score is None); intervals.py says how
    intervals: dict[str, list[float] | None] = field(default_factory=dict)
    macro: dict[str, float | None] = field(default_factory=dict)
    macro_intervals: dict[str, list[float] | None] = field(default_factory=dict)
    chance: dict[str, float | None] = field(default_factory=dict)
    sections: dict[str, SectionCounts] = field(default_factory=dict)
    scenarios: list[ScenarioScore] = field(default_factory=list)
    position: Position | None = None
    agreement: Agreement | None = None
    precision: Sampling | None = None  # a --precision run
    behaviour: Behaviour | None = None  # biases: length, self-preference, by responder model, refusals
    calibration: Calibration | None = None  # --verdict-probs: Brier, ECE, AUROC of P(right answer)
    jury: list[str] | None = None  # a jury (`rmb-judge jury`): its members' judges
    data: DataInfo = field(default_factory=DataInfo)
    usage: Usage = field(default_factory=Usage)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        """Read a summary, tolerating what older versions lacked or wrote differently."""
        return _load(cls, data)


def read_summary(folder: Path) -> Summary:
    """A run folder's summary.json, typed; one clear error naming the folder or file."""
    file = folder / "summary.json"
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such run folder")
    if not file.is_file():
        raise UsageError(f"{folder}: no summary.json in this folder (is it the --out folder of a run?)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{file}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{file}: not UTF-8 text") from None
    except OSError as error:
        raise UsageError(f"{file}: cannot read ({error.strerror})") from None
    if not isinstance(data, dict) or not isinstance(data.get("judge"), str):
        raise DataError(f'{file}: not an rmb-judge summary (no "judge" string)')
    return Summary.from_json(data)


def data_files(folder: Path) -> dict[str, str] | None:
    """The data files' SHA-256 that a run folder's manifest.json lists (None: not recorded or unreadable)."""
    try:
        files = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["data"]["files"]
    except (OSError, ValueError, LookupError, TypeError):
        return None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else None


_T = TypeVar("_T")


def _load(cls: type[_T], data: Any) -> _T:
    """A dataclass from a JSON object: known fields converted by their annotations, unknown
    ones ignored, missing ones left at their defaults."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if isinstance(data, dict) and f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**values)


def _convert(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _load(hint, value) if isinstance(value, dict) else hint()
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value] if isinstance(value, list) else []
    if origin is dict:
        _, item = typing.get_args(hint)
        return {k: _convert(item, v) for k, v in value.items()} if isinstance(value, dict) else {}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
