"""`summary.json`, typed: what a run writes and what `report` and `compare` read back, through
the same dataclasses. `to_json` and `from_json` are the only places that know its layout; a
summary written by an older version (fields missing, or null) reads back with their defaults.

Reading back checks every value against its annotation (a string where a count belongs, NaN,
a score outside [0, 1], an interval that is not two numbers): a damaged run folder is one
line naming the file and the field, never a traceback or a wrong number. Files are read only
if they are regular files, and only so far: a link to /dev/zero or a FIFO is refused unopened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import stat
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, TypeVar

from .errors import DataError, UsageError
from .measures import Behaviour, Calibration

LOCK = ".rmb-judge.lock"  # the file a run holds locked in its --out folder while it writes there (outputs.RunFolder)
JSON_LIMIT = 64 << 20  # bytes of summary.json or manifest.json read at most (a real one is far smaller)
LINE_LIMIT = 64 << 20  # bytes of one samples.jsonl line read at most


ROUNDING = 1e-9  # how far a mean of scores in [0, 1] may stray outside it by float rounding (1.0000000000000002)


@dataclass(frozen=True)
class Within:
    """An annotation: the number lies in [low, high] (give or take float rounding)."""

    low: float
    high: float

    def check(self, value: Any, where: str) -> None:
        if not self.low - ROUNDING <= value <= self.high + ROUNDING:
            raise DataError(f"{where}: {value!r} is outside [{self.low:g}, {self.high:g}]")


@dataclass(frozen=True)
class Length:
    """An annotation: the list holds exactly n items."""

    n: int

    def check(self, value: Any, where: str) -> None:
        if len(value) != self.n:
            raise DataError(f"{where}: expected {self.n} numbers, got {len(value)}")


Fraction = Annotated[float, Within(0.0, 1.0)]  # a score, a rate or a chance level
Interval = Annotated[list[Fraction], Length(2)]  # 95% [low, high] of a fraction
# a benchmark's score: a fraction, or an official statistic whose weights stray 0.01 beyond it
# (RewardBench 2's Ties: 1.01 at best, -0.01 at worst; kept as published, not clipped)
Score = Annotated[float, Within(-0.01, 1.01)]
ScoreInterval = Annotated[list[Score], Length(2)]
Count = Annotated[int, Within(0, math.inf)]  # records, comparisons, verdicts of a kind


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
    n: Count = 0  # records
    comparisons: Count = 0
    wins: Count = 0
    ties: Count = 0
    losses: Count = 0
    unparsed: Count = 0
    refused: Count = 0
    failed: Count = 0
    truncated: Count = 0
    equal_rewards: Count = 0


@dataclass
class ScenarioScore:
    """One subset's (stratum's) accuracy: RMB's scenario, JudgeBench's source, ..."""

    category_path: str = ""  # the subset's name (the field's name is RMB's, kept for its readers)
    set: str = ""  # the record kind (RMB: pairwise | bon)
    section: str = ""  # the goal (RMB: helpfulness | harmlessness)
    n: Count = 0
    accuracy: Fraction | None = None
    interval: Interval | None = None  # 95%, of the accuracy
    population: Count | None = None  # a --precision run: the scenario's records in the selection
    unparsed: Count = 0
    refused: Count = 0
    failed: Count = 0
    truncated: Count = 0
    subset: str = ""  # the subset's name (category_path's value; absent from runs before issue 16)

    @property
    def name(self) -> str:
        return self.subset or self.category_path


@dataclass
class Position:
    """How often the first-shown answer was picked, and how often two orders agree."""

    first_pick_rate: Fraction | None = None
    first_pick_interval: Interval | None = None
    by_section: dict[str, Fraction] = field(default_factory=dict)
    by_section_intervals: dict[str, Interval] = field(default_factory=dict)
    consistency: Fraction | None = None
    consistency_interval: Interval | None = None
    consistency_n: Count = 0


@dataclass
class Agreement:
    """With --samples K > 1: how often all K votes agree, and the mean majority share."""

    samples: int = 0
    unanimous_rate: Fraction | None = None
    unanimous_interval: Interval | None = None
    mean_majority_share: Fraction | None = None
    mean_majority_share_interval: Interval | None = None


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
    scenario_files_found: Count = 0
    scenario_files_read: Count = 0
    records: Count = 0  # selected
    records_scored: Count = 0
    comparisons_judged: Count = 0
    comparisons_expected: Count = 0


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
    options: dict[str, str] = field(default_factory=dict)  # the benchmark's own selection flags, e.g. split
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
        keep = ("sets", "sections", "scenarios", "limit", "sample", "seed", "options", "template_sha256", "order",
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
    stopped_reason: str | None = None  # precision | budget | interrupted | fatal | wait | cache | error | unreadable
    suspect: bool = False
    warnings: list[str] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    scores: dict[str, Score | None] = field(default_factory=dict)
    # 95% [low, high] of each score (None where the score is None); intervals.py says how
    intervals: dict[str, ScoreInterval | None] = field(default_factory=dict)
    macro: dict[str, Score | None] = field(default_factory=dict)
    macro_intervals: dict[str, ScoreInterval | None] = field(default_factory=dict)
    chance: dict[str, Fraction | None] = field(default_factory=dict)
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
        """Read a summary, tolerating what older versions lacked; a value of the wrong type or
        range is a DataError naming its field."""
        return _load(cls, data, "")


@dataclass
class SampleProbs:
    """--verdict-probs: P(A), P(B), P(tie) at a presentation's verdict token."""

    A: Fraction
    B: Fraction
    tie: Fraction


@dataclass
class SampleScore:
    """A samples.jsonl line as `compare` and `jury` read it back: which presentation of which
    judgment, the score its record got (None: a record a stopped run did not finish), and its
    verdict and verdict probabilities. A line names its record's subset `subset` (and by the
    benchmark's own name, RMB's `category_path`, which is all a line written before issue 16
    has) and its judgment by `judgment` (RMB: `loser_index`)."""

    uid: str
    record_correct: Fraction | None
    subset: str = ""
    category_path: str = ""
    loser_index: int | None = None  # RMB's Best-of-N: which loser
    judgment: int | None = None  # which of its record's judgments (other benchmarks)
    order: str | None = None  # AB: the label-preferred answer shown first
    link: int | None = None  # the record's linked set (records sharing an answer to one conversation)
    verdict: str | float | None = None  # a pair's positional A, B, tie; a ranking's slot; a rating; None: no verdict
    models: list[str] | None = None  # a ranking's or a rating's answers' models (a pair's line has none)
    probs: SampleProbs | None = None

    @property
    def name(self) -> str:
        """The record's subset."""
        return self.subset or self.category_path

    @property
    def position(self) -> int | None:
        return self.judgment if self.judgment is not None else self.loser_index


def open_regular(file: Path) -> BinaryIO:
    """`file` opened for reading, if it is a regular file. Opened without blocking and then
    checked, so a FIFO is refused rather than waited on and a link to a device (/dev/zero,
    read until memory runs out) rather than read. FileNotFoundError passes through."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise UsageError(f"{file}: cannot read ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError(f"{file}: not a regular file (a device, a FIFO or a link to one)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_json(file: Path) -> Any:
    """A run folder's JSON file (FileNotFoundError if absent); one clear error if it is
    not a regular file, too big, or not JSON."""
    with open_regular(file) as handle:
        raw = handle.read(JSON_LIMIT + 1)
    if len(raw) > JSON_LIMIT:
        raise DataError(f"{file}: larger than {JSON_LIMIT >> 20} MiB: not a file rmb-judge wrote")
    try:
        return json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{file}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{file}: not UTF-8 text") from None


def read_summary(folder: Path) -> Summary:
    """A run folder's summary.json, typed; one clear error naming the folder or file."""
    file = folder / "summary.json"
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such run folder")
    try:
        data = read_json(file)
    except FileNotFoundError:
        if (folder / LOCK).exists():
            raise UsageError(f"{folder}: no summary.json yet: a run writing this folder writes it when it ends "
                             "(Ctrl-C stops it with a partial one)") from None
        raise UsageError(f"{folder}: no summary.json in this folder (is it the --out folder of a run?)") from None
    if not isinstance(data, dict) or not isinstance(data.get("judge"), str):
        raise DataError(f'{file}: not an rmb-judge summary (no "judge" string)')
    try:
        return Summary.from_json(data)
    except DataError as error:
        raise DataError(f"{file}: {error}") from None


def read_samples(folder: Path) -> Iterator[tuple[int, SampleScore]]:
    """Each line of a run folder's samples.jsonl (FileNotFoundError if absent) with its
    number, typed; one clear error naming the file and line if a line is not a sample of
    rmb-judge, or (with a hint to rewrite it) one written before `record_correct` existed."""
    file = folder / "samples.jsonl"
    for number, row in sample_rows(file):
        if isinstance(row, dict) and "record_correct" not in row:
            raise DataError(f"{file}: written by an older rmb-judge (no record_correct); rerun the "
                            "same command with --offline to rewrite it from the cache")
        try:
            line = _load(SampleScore, row, "")
        except DataError as error:
            raise DataError(f"{file}, line {number}: {error}") from None
        if not line.name:
            raise DataError(f"{file}, line {number}: names no subset (subset or category_path)")
        yield number, line


def sample_rows(file: Path) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of a samples.jsonl file (FileNotFoundError if absent) with its
    number, parsed but not checked; one clear error naming the file and line for a line that
    is too long or not JSON, and for a file that is not a regular file (open_regular)."""
    with open_regular(file) as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(LINE_LIMIT + 1), b""), 1):
            where = f"{file}, line {number}"
            if len(raw) > LINE_LIMIT:
                raise DataError(f"{where}: longer than {LINE_LIMIT >> 20} MiB: not a sample line of rmb-judge")
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise DataError(f"{where}: not a sample line of rmb-judge (not JSON)") from None


def data_files(folder: Path) -> dict[str, str]:
    """The data files' SHA-256 that a run folder's manifest.json lists (FileNotFoundError if
    it has none); one clear error if it cannot be read or lists no data files."""
    file = folder / "manifest.json"
    manifest = read_json(file)
    data = manifest.get("data") if isinstance(manifest, dict) else None
    files = data.get("files") if isinstance(data, dict) else None
    if files is None:
        raise DataError(f"{file}: lists no data files (data.files)")
    try:
        return _convert(dict[str, str], files, "data.files")
    except DataError as error:
        raise DataError(f"{file}: {error}") from None


_T = TypeVar("_T")


def _load(cls: type[_T], data: Any, where: str) -> _T:
    """A dataclass from a JSON object: known fields converted by their annotations, unknown
    ones ignored, missing (or null) ones left at their defaults; a field without a default
    must be present."""
    _expect(isinstance(data, dict), "an object", data, where)
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{where}.{f.name}" if where else f.name
        value = data.get(f.name)
        if f.name not in data or (value is None and not _optional(hints[f.name])):
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataError(f"{name}: missing")
            continue
        values[f.name] = _convert(hints[f.name], value, name)
    return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A dataclass's field annotations, resolved once (resolving them is most of a line's reading)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return _HINTS[cls]


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _convert(hint: Any, value: Any, where: str) -> Any:
    """`value` as `hint` says, or a DataError naming `where`."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *marks = typing.get_args(hint)
        converted = _convert(base, value, where)
        for mark in marks:
            mark.check(converted, where)
        return converted
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        *others, last = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in others:  # the first the value is; the last names the error
            with contextlib.suppress(DataError):
                return _convert(option, value, where)
        return _convert(last, value, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _load(hint, value, where)
    if origin is list:
        (item,) = typing.get_args(hint)
        _expect(isinstance(value, list), "a list", value, where)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        _expect(isinstance(value, dict), "an object", value, where)
        return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        _expect(isinstance(value, int | float) and not isinstance(value, bool), "a number", value, where)
        _expect(math.isfinite(value), "a finite number", value, where)
        return float(value)
    if hint is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), "a whole number", value, where)
        return value
    _expect(isinstance(value, hint), {str: "a string", bool: "true or false"}.get(hint, hint.__name__), value, where)
    return value


def _expect(ok: bool, what: str, value: Any, where: str) -> None:
    if not ok:
        raise DataError(f"{where + ': ' if where else ''}expected {what}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A JSON value, short, for an error message."""
    text = "NaN" if isinstance(value, float) and math.isnan(value) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"
