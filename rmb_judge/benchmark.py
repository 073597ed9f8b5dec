"""What a benchmark is, to the rest of rmb-judge.

A benchmark owns everything particular to its data and its scoring:
- its data: where it lives and how it is fetched and verified (a manifest of files with sizes
  and SHA-256s beside the module), how its files become `Record`s, its selection flags and
  options (`--split`), its subsets (the strata: RMB's category paths, JudgeBench's sources);
- what the judge is asked: the judgments each record needs (`judgments`: pairs, rankings,
  ratings), the orders a pair is shown in (`orders_for`), the template a record is asked with
  (`template_for`), what a reward model's rewards say (`reward_verdict`);
- how a record scores: a judgment's score from its presentations (`judgment_score`: RMB's rule
  for two orders, JudgeBench's counter), the record's values from its judgments'
  (`record_score`), and its score keys (`score_keys`: each a weighted mean of stratum means of
  one record value, whose interval comes from intervals.py, or a custom estimator);
- chance levels, published rows, display names, and the names its subsets and judgments have
  in samples.jsonl.
The engine, templates, verdicts, cache, scoring and report are written against this interface
and know no benchmark by name. Each module of `benchmarks/` registers its class there
(`benchmarks.register`); adding a benchmark is that module, its manifest, its templates in
`prompts/` and its tests.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from .errors import DataError, UsageError
from .judgments import (
    ORDERS,
    SCORE,
    Judged,
    Judgment,
    Pair,
    Presentation,
    Ranking,
    Rating,
    RecordScore,
    pair_orders,
    scalar_verdict,
    shuffled_layout,
)
from .records import Dataset, Record, Selection, unmatched_glob, user_cache_dir

if TYPE_CHECKING:
    from .intervals import Estimate
    from .templates import Template

PAIRS = ("pairwise", "pointwise", "scalar")  # the ways of answering pairs: a template's kind, or a reward model
OVERALL = "overall"


@dataclass(frozen=True)
class Section:
    """One score of a benchmark over a group of its subsets: the records of one kind under one
    goal (the pair is the section's name in summary.json's scenarios)."""

    key: str  # the score's name in summary.json, e.g. "pairwise_helpfulness"
    kind: str  # the record kind, e.g. RMB's "pairwise" (one rejected answer) or "bon" (N-1 losers)
    goal: str  # what the judge is asked to value, e.g. "harmlessness" (templates' {criteria})
    title: str  # a short column title, e.g. "Help Pair"


# An estimator of a score key of the benchmark's own: from the scored records, the keys
# estimated before it (in `score_keys` order) and the critical value z, the estimate or None.
Estimator = Callable[[Sequence[RecordScore], "Mapping[str, Estimate | None]", float], "Estimate | None"]


@dataclass(frozen=True)
class ScoreKey:
    """One key of summary.json's `scores`: a weighted mean of the stratum (subset) means of one
    record value (`record_score`), over the subsets of `sections`. `across`: "sections" weighs
    each section present equally and a section's subsets by their sizes (RMB's overall: the
    mean of the section scores); "records" weighs every record equally (JudgeBench's overall:
    correct pairs over all pairs). A single section's key is the mean over its records either
    way. `estimator`: the benchmark's own estimate instead (a set statistic, as RewardBench 2's
    Ties)."""

    key: str
    sections: tuple[str, ...]
    value: str = SCORE
    across: str = "sections"
    estimator: Estimator | None = None


@dataclass(frozen=True)
class Option:
    """A selection flag of a benchmark's own, e.g. JudgeBench's `--split gpt|claude`."""

    flag: str
    choices: tuple[str, ...]
    default: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the dataset folder, e.g. "Pairwise_set/Helpfulness/Chat/Discussion.json"
    size: int | None
    sha256: str | None  # None: not known in advance, verified by parsing


@dataclass(frozen=True)
class Manifest:
    """The files of a benchmark's dataset at a pinned upstream version."""

    commit: str
    base_url: str  # everything before the dataset folder
    folder: str  # the dataset folder's name upstream, e.g. "RMB_dataset"
    files: tuple[FileEntry, ...]
    cache_folder: str = ""  # the folder `data fetch` fills in the user cache (default: `folder`)
    # a Hugging Face hub dataset instead of an HTTP base: its repo id, and the revision `data
    # fetch` resolves when no commit is pinned (`commit` empty: trust on first use, hubdata.py)
    hub: str = ""
    revision: str = ""

    def url(self, entry: FileEntry, base_url: str | None = None) -> str:
        """`base_url` replaces the upstream prefix, so any server with the same layout works."""
        base = (base_url or self.base_url).rstrip("/")
        return f"{base}/{self.folder}/{quote(entry.path)}"

    def select(self, only: Sequence[str] | None) -> list[FileEntry]:
        """Every file, or those matching any of the fnmatch patterns in `only`."""
        if only is None:
            return list(self.files)
        for pattern in only:
            if not any(fnmatch.fnmatchcase(e.path, pattern) for e in self.files):
                raise DataError(f"no file of {self.folder}/ matches {pattern!r}")
        return [e for e in self.files if any(fnmatch.fnmatchcase(e.path, p) for p in only)]

    def missing(self, root: Path) -> list[str]:
        """Files not present under `root`, in manifest order: what a copy lacks."""
        return [e.path for e in self.files if not (Path(root) / e.path).is_file()]


@dataclass(frozen=True)
class Published:
    """A benchmark's published leaderboard, as transcribed (with its source)."""

    title: str
    source: str
    rows: tuple[dict[str, Any], ...]  # {"model": ..., "kind": ..., score keys...}


class Benchmark:
    """The interface; subclasses fill in the facts, `load`, `check_selection`, `read_file` and
    `upstream_files`, and override the rules where theirs differ from RMB's (the defaults)."""

    name: ClassVar[str]  # as in summary.json's "benchmark" and --benchmark
    title: ClassVar[str]  # as shown, e.g. "RMB"
    sections: ClassVar[tuple[Section, ...]]  # in summary.json order
    leaderboard: ClassVar[tuple[str, ...]]  # score keys in the published leaderboard's order
    data_variable: ClassVar[str]  # the environment variable naming the data folder
    manifest_resource: ClassVar[str]  # file name of the manifest beside the module
    published_resource: ClassVar[str | None] = None
    scenarios_note: ClassVar[str] = ""  # what the full dataset holds, in words
    files_noun: ClassVar[str] = "data files"  # what its data files are called in messages (RMB: scenario files)
    extra: ClassVar[str | None] = None  # the install extra its data needs (bin/rmb-judge reads it)
    subset_field: ClassVar[str] = "subset"  # samples.jsonl's name for a record's subset (RMB: category_path)
    judgment_field: ClassVar[str] = "judgment"  # samples.jsonl's name for Pair.position (RMB: loser_index)
    selection_flags: ClassVar[tuple[str, ...]] = ()  # of --sets and --sections, those it honours
    options: ClassVar[tuple[Option, ...]] = ()  # selection flags of its own
    orders: ClassVar[tuple[str, ...]] = ORDERS  # the --order values it takes
    default_order: ClassVar[str] = "random"
    default_template: ClassVar[str] = "rmb"
    # a reward model's pairs are shown in --order's orders too, each decided by the two rewards
    # (JudgeBench's official reward model judge does both orders), not once, the chosen answer first
    scalar_orders: ClassVar[bool] = False

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.kind for s in self.sections))

    @property
    def goals(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.goal for s in self.sections))

    def section(self, kind: str, goal: str) -> Section:
        return next(s for s in self.sections if s.kind == kind and s.goal == goal)

    def draw_unit(self, record: Record) -> str | None:
        """What a `--precision` run draws with this record, as one unit (RewardBench 2's Ties:
        the rows of one prompt, scored only together); None: the record alone."""
        return None

    def score_title(self, key: str) -> str:
        """A score key's column title: its section's, "Overall", else the key capitalised
        (RM-Bench's "Hard", a mean over its domains)."""
        titles = {s.key: s.title for s in self.sections} | {OVERALL: "Overall"}
        return titles.get(key, key.capitalize())

    def score_keys(self) -> tuple[ScoreKey, ...]:
        """summary.json's `scores`, in order: each section's mean over its records, then
        `overall`, the mean of the sections present."""
        keys = tuple(s.key for s in self.sections)
        return (*(ScoreKey(key, (key,)) for key in keys), ScoreKey(OVERALL, keys))

    def default_data_dir(self) -> Path:
        """The data variable's folder, else the one `rmb-judge data fetch` fills."""
        if os.environ.get(self.data_variable):
            return Path(os.environ[self.data_variable])
        return user_cache_dir() / self.manifest().cache_folder

    def manifest(self) -> Manifest:
        data = json.loads(_resource(self.manifest_resource))
        commit = data.get("commit") or ""
        return Manifest(
            commit=commit,
            base_url=data["base_url"].format(commit=commit or data.get("revision", "")),
            folder=data["folder"],
            files=tuple(FileEntry(**item) for item in data["files"]),
            cache_folder=data.get("cache_folder", data["folder"]),
            hub=data.get("hub", ""),
            revision=data.get("revision", ""),
        )

    def published(self) -> Published | None:
        if self.published_resource is None:
            return None
        data = json.loads(_resource(self.published_resource))
        return Published(data["title"], data["source"], tuple(data["rows"]))

    # -- data ------------------------------------------------------------------------------

    def load(self, root: Path, selection: Selection | None = None) -> Dataset:
        """Load and select records; DataError naming the file and record on bad input."""
        raise NotImplementedError

    def load_every(self, root: Path) -> Dataset:
        """Every record of every data file (`data info` and `data validate`): by default the
        default selection's."""
        return self.load(root)

    def check_selection(self, selection: Selection) -> None:
        """One clear error for selection flags this benchmark cannot honour (an unknown set or
        section, a scenario glob matching none of its subsets, another benchmark's option),
        before any data is read. Subclasses call this first."""
        given = {"--sets": selection.sets, "--sections": selection.sections}
        for flag, value in given.items():
            if value is not None and flag not in self.selection_flags:
                raise UsageError(f"{flag}: not a selection of benchmark {self.name} (its subsets are chosen "
                                 "with --scenarios GLOB)")
        own = {option.dest: option for option in self.options}
        for dest, value in selection.options.items():
            if dest not in own:
                raise UsageError(f"--{dest.replace('_', '-')}: not an option of benchmark {self.name}")
            if value not in own[dest].choices:
                raise UsageError(f"{own[dest].flag}: {value!r} is not one of {', '.join(own[dest].choices)}")

    @staticmethod
    def check_scenarios(selection: Selection, names: Sequence[str], noun: str = "category_path") -> None:
        """Refuse a --scenarios glob that matches none of `names` (the benchmark's `noun`s)."""
        for pattern in selection.scenarios:
            if problem := unmatched_glob(pattern, names, noun):
                raise UsageError(problem)

    def option(self, selection: Selection, dest: str) -> str:
        """The value of one of its options in `selection` (its default when not given)."""
        return selection.options.get(dest) or next(o.default for o in self.options if o.dest == dest)

    def read_file(self, root: Path, path: Path, digests: dict[str, str] | None = None) -> Iterator[Record]:
        """One data file's records (its SHA-256 into `digests`); DataError on bad input."""
        raise NotImplementedError

    def upstream_files(self, selection: Selection) -> int:
        """How many of the manifest's files the selection covers."""
        raise NotImplementedError

    def notes(self, dataset: Dataset, selection: Selection) -> list[str]:
        """Sentences for the summary's warnings about what a run's selection means for its
        scores (a benchmark whose headline needs every subset says when some are left out):
        by default none."""
        return []

    def subset_files(self, subset: str, files: Mapping[str, str]) -> list[str]:
        """Of a run's data files (`files`, relative path -> SHA-256), those a subset's records
        come from (two runs share a subset's records only where these are the same bytes): by
        default every file."""
        return sorted(files)

    # -- what the judge is asked -----------------------------------------------------------

    def judgments(self, record: Record, mode: str) -> list[Judgment]:
        """The judgments a record needs, for a template of kind `mode` (or "scalar": a reward
        model's); pairwise and pointwise templates and reward models answer pairs. By default
        the first chosen answer against each rejected one, numbered when there are several."""
        if mode not in PAIRS:
            raise UsageError(f"benchmark {self.name} judges pairs of answers: a {mode} template does not apply")
        several = len(record.rejected) > 1
        return [Pair(record, 0, i, i if several else None) for i in range(len(record.rejected))]

    def orders_for(self, judgment: Judgment, mode: str, seed: int, scalar: bool = False) -> tuple[str, ...]:
        """The orders (layouts) a judgment is shown in, for --order `mode`. A reward model
        scores each answer once, so by default its pairs are shown once, the chosen answer
        first (`scalar_orders`: in the orders `mode` says)."""
        if isinstance(judgment, Rating):
            return ("",)
        if isinstance(judgment, Ranking):  # one seeded layout (`fixed`: as listed)
            listed = "".join(str(i) for i in range(len(judgment.answers)))
            record = judgment.record
            return (listed if mode == "fixed" or scalar else
                    shuffled_layout(seed, record.subset, record.uid, len(judgment.answers), judgment.position),)
        return ("AB",) if scalar and not self.scalar_orders else pair_orders(judgment, mode, seed)

    def template_for(self, record: Record, template: Template) -> Template:
        """The template a record is asked with (a benchmark may ask some records with its own)."""
        return template

    def reward_verdict(self, presentation: Presentation, rewards: Sequence[float]) -> str | float | None:
        """A reward model's verdict from the rewards of the answers shown, in shown order."""
        return scalar_verdict(presentation, rewards)

    # -- how a record scores -------------------------------------------------------------

    def judgment_score(self, judged: Sequence[Judged]) -> float:
        """A judgment's score from its presentations (its orders): the one's score; with two
        orders, a win only if both are, a tie (0.5; a reward model's 0) if they disagree, 0
        if either has no verdict (RMB's `--order both`)."""
        outcomes = [j.outcome for j in judged]
        if None in outcomes:
            return 0.0
        if len(set(outcomes)) == 1:  # one presentation, or both orders agree
            return judged[0].correct
        return 0.0 if judged[0].scalar else 0.5

    def record_score(self, record: Record, judged: Sequence[Sequence[Judged]], scores: Sequence[float]
                     ) -> dict[str, float]:
        """A record's values (`SCORE` and any other its score keys average) from its
        judgments' presentations and scores (in `judgments` order): one judgment's score, or 1
        only if every judgment is won (RMB's best-of-N: a tie or a loss is not a win)."""
        if len(scores) == 1:
            return {SCORE: scores[0]}
        return {SCORE: float(all(score == 1.0 for score in scores))}

    def chance(self, record: Record, scalar: bool, order: str | None = None) -> float:
        """What a random judge is expected to score on `record`: 0.5 on one pair; on best-of-N
        a random pairwise judge must win all N-1 comparisons (0.5**(N-1)), while a random
        scalar pick is right 1/N of the time."""
        n = len(record.rejected) + 1
        if n == 2:
            return 0.5
        return 1 / n if scalar else 0.5 ** (n - 1)

    # -- names -------------------------------------------------------------------------------

    def scenario_label(self, subset: str) -> str:
        """A subset's name without the part its section already says."""
        return subset

    def sample_names(self, presentation: Presentation) -> dict[str, Any]:
        """The fields naming a presentation's record and judgment in samples.jsonl."""
        record = presentation.record
        return {self.subset_field: record.subset, self.judgment_field: presentation.judgment.position}


def _resource(name: str) -> str:
    return (resources.files("rmb_judge.benchmarks") / name).read_text(encoding="utf-8")
