"""What a benchmark is, to the rest of rmb-judge.

A benchmark owns everything particular to its data and its scoring: where its data lives and
how it is fetched and verified (a manifest of files with sizes and SHA-256s), how its files
become `Record`s, its sections (each a kind of record, pairwise or best-of-N, under one goal
such as helpfulness), how the scores of a record's comparisons make the record's score, what
a random judge would score, its published leaderboard, and its display names. The engine,
templates, verdicts, cache, scoring and report are written against this interface and know
no benchmark by name. RMB (`benchmarks/rmb.py`) is the first implementation; adding one is
a module in `benchmarks/`, its data manifest beside it, and its tests.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from .errors import DataError
from .records import Dataset, Record, Selection, user_cache_dir


@dataclass(frozen=True)
class Section:
    """One score of a benchmark: the records of one kind under one goal."""

    key: str  # the score's name in summary.json, e.g. "pairwise_helpfulness"
    kind: str  # "pairwise" (one rejected answer) or "bon" (best-of-N: N-1 losers)
    goal: str  # what the judge is asked to value, e.g. "harmlessness" (templates' {criteria})
    title: str  # a short column title, e.g. "Help Pair"


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
    folder: str  # the dataset folder's name, e.g. "RMB_dataset"
    files: tuple[FileEntry, ...]

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
    """The interface; subclasses fill in the facts and `read_file`."""

    name: ClassVar[str]  # as in summary.json's "benchmark"
    title: ClassVar[str]  # as shown, e.g. "RMB"
    sections: ClassVar[tuple[Section, ...]]  # in summary.json order
    leaderboard: ClassVar[tuple[str, ...]]  # section keys in the published leaderboard's order
    data_variable: ClassVar[str]  # the environment variable naming the data folder
    manifest_resource: ClassVar[str]  # file name of the manifest beside the module
    published_resource: ClassVar[str | None] = None
    scenarios_note: ClassVar[str] = ""  # what the full dataset holds, in words

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.kind for s in self.sections))

    @property
    def goals(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.goal for s in self.sections))

    def section(self, kind: str, goal: str) -> Section:
        return next(s for s in self.sections if s.kind == kind and s.goal == goal)

    def default_data_dir(self) -> Path:
        """The data variable's folder, else the one `rmb-judge data fetch` fills."""
        if os.environ.get(self.data_variable):
            return Path(os.environ[self.data_variable])
        return user_cache_dir() / self.manifest().folder

    def manifest(self) -> Manifest:
        data = json.loads(_resource(self.manifest_resource))
        return Manifest(
            commit=data["commit"],
            base_url=data["base_url"].format(commit=data["commit"]),
            folder=data["folder"],
            files=tuple(FileEntry(**item) for item in data["files"]),
        )

    def published(self) -> Published | None:
        if self.published_resource is None:
            return None
        data = json.loads(_resource(self.published_resource))
        return Published(data["title"], data["source"], tuple(data["rows"]))

    def load(self, root: Path, selection: Selection | None = None) -> Dataset:
        """Load and select records; DataError naming the file and record on bad input."""
        raise NotImplementedError

    def check_selection(self, selection: Selection) -> None:
        """One clear error for selection flags this benchmark cannot honour (an unknown set or
        section, a scenario glob matching none of its scenarios), before any data is read."""
        raise NotImplementedError

    def read_file(self, root: Path, path: Path, digests: dict[str, str] | None = None) -> Iterator[Record]:
        """One data file's records (its SHA-256 into `digests`); DataError on bad input."""
        raise NotImplementedError

    def upstream_files(self, selection: Selection) -> int:
        """How many of the manifest's files the selected kinds and goals cover."""
        raise NotImplementedError

    def record_score(self, record: Record, comparison_scores: Sequence[float]) -> float:
        """A record's score from its comparisons' (in order): by default the one
        comparison's score for a pairwise record, and 1 only if every comparison is won for
        a best-of-N record (a tie or a loss is not a win)."""
        if record.kind == "pairwise":
            return comparison_scores[0]
        return float(all(score == 1.0 for score in comparison_scores))

    def chance(self, record: Record, scalar: bool) -> float:
        """What a random judge is expected to score on `record`: 0.5 pairwise; on best-of-N
        a random pairwise judge must win all N-1 comparisons (0.5**(N-1)), while a random
        scalar pick is right 1/N of the time."""
        n = len(record.others) + 1
        if record.kind == "pairwise":
            return 0.5
        return 1 / n if scalar else 0.5 ** (n - 1)

    def scenario_label(self, category_path: str) -> str:
        """A scenario's name without the part its section already says."""
        return category_path


def _resource(name: str) -> str:
    return (resources.files("rmb_judge.benchmarks") / name).read_text(encoding="utf-8")
