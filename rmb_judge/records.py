"""Records, whatever the benchmark: a conversation, the answers its label prefers and those
it does not, and the selection a run makes of them. How a benchmark's files become
records is the benchmark's own business (`benchmarks/`)."""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError

ROLES = {"user", "assistant", "system"}
# `\ud800`-`\udfff` escapes, in either case: JSON accepts an unpaired one, Python decodes it
# into a string no encoder takes, so files holding one get a careful per-field check
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Answer:
    model: str
    text: str


@dataclass(frozen=True, eq=False)
class Record:
    """One record: a conversation, the answers its label prefers (`chosen`) and those it
    does not (`rejected`), and where it counts.

    What a record's answers are and how the judge is asked about them is its benchmark's
    (`Benchmark.judgments`): RMB's pairwise record has one chosen and one rejected answer, its
    best-of-N record one chosen (the best) and N-1 rejected (the losers). Records compare and
    hash by identity: each is one entry of one file, and scoring keys dictionaries by them,
    which must not rehash whole conversations.
    """

    kind: str  # the benchmark's record kind, e.g. RMB's "pairwise" | "bon"
    goal: str  # what the judge is asked to value (templates' {criteria}), e.g. "helpfulness"
    section: str  # the benchmark section (score) it counts in, e.g. "pairwise_helpfulness"
    subset: str  # its stratum: RMB's category_path, JudgeBench's source, ...
    uid: str  # unique within the benchmark's subset
    conversation: tuple[Message, ...]
    chosen: tuple[Answer, ...]
    rejected: tuple[Answer, ...]
    file: str  # path relative to the dataset root
    index: int  # position in its file
    extra: Mapping[str, Any] = field(default_factory=dict)  # the benchmark's own facts about it

    @property
    def answers(self) -> tuple[Answer, ...]:
        """Every answer, the chosen ones first."""
        return (*self.chosen, *self.rejected)


@dataclass
class Selection:
    """What `--sets/--sections/--scenarios/--limit/--sample/--seed` and a benchmark's own
    options (`--split`) ask for, by the benchmark's names (the benchmark checks them). `sets`
    and `sections` None: all of the benchmark's record kinds and goals."""

    sets: Sequence[str] | None = None
    sections: Sequence[str] | None = None
    scenarios: Sequence[str] = ()
    limit: int | None = None
    sample: float | None = None
    seed: int = 0
    options: Mapping[str, str] = field(default_factory=dict)  # a benchmark's own flags given, e.g. {"split": "claude"}

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise DataError(f"--limit must be at least 1, got {self.limit}")
        if self.sample is not None and not 0 < self.sample <= 1:
            raise DataError(f"--sample must be a fraction in (0, 1], got {self.sample}")

    def wants_file(self, subset: str) -> bool:
        return not self.scenarios or any(fnmatch.fnmatch(subset, pattern) for pattern in self.scenarios)

    def wants_record(self, record: Record) -> bool:
        if self.sample is None:
            return True
        digest = hashlib.sha256(f"{self.seed}:{record.subset}:{record.uid}".encode())
        return int.from_bytes(digest.digest()[:8], "big") / 2**64 < self.sample


@dataclass
class Dataset:
    root: Path
    records: list[Record]
    files: list[str] = field(default_factory=list)  # data files read
    scenarios_found: int = 0  # data files present for the selected sets/sections
    sha256: dict[str, str] = field(default_factory=dict)  # file -> digest of the bytes read
    source: dict[str, str] = field(default_factory=dict)  # where the copy came from, as it says (a hub revision)


def unmatched_glob(pattern: str, paths: Sequence[str], name: str = "category_path") -> str | None:
    """Why the --scenarios glob `pattern` selects none of the subsets `paths` (called `name`
    by their benchmark; with what it may have meant), or None when it selects some."""
    if not paths or any(fnmatch.fnmatch(path, pattern) for path in paths):
        return None
    said = (f"--scenarios {pattern!r} matches no scenario of the chosen sets and sections: a glob matches the "
            f"whole {name}, e.g. {paths[0]!r}")
    bare = pattern.strip("*")
    found = next((path for path in paths if bare and bare.lower() in path.lower()), None)
    if found is not None:
        start = found.lower().index(bare.lower())
        meant = f"*{found[start : start + len(bare)]}*"
        return f"{said}; {meant!r} matches {sum(1 for path in paths if fnmatch.fnmatch(path, meant))}"
    parts = sorted({part for path in paths for part in path.split("/")})
    close = difflib.get_close_matches(bare, parts, n=3, cutoff=0.6)
    return f"{said}" + (f"; close: {', '.join(repr(f'*{part}*') for part in close)}" if close else "")


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rmb-judge"


def unpaired_surrogate(value: object, name: str = "") -> tuple[str, str] | None:
    """The first string under `value` (a key or a value) that cannot be encoded: its field
    path, printable, and the surrogate as an escape. A valid escaped pair decodes to one
    character and passes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            printable = name.encode("utf-8", "backslashreplace").decode("utf-8")
            return printable, f"\\u{ord(value[exc.start]):04x}"
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := unpaired_surrogate(item, f"{name}[{index}]"):
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{name}.{key}" if name else key
            if found := unpaired_surrogate(key, path) or unpaired_surrogate(item, path):
                return found
    return None
