"""RM-Bench (Liu et al., "RM-Bench: Benchmarking Reward Models of Language Models with Subtlety
and Style", ICLR 2025, arXiv:2410.16184): does a judge prefer the right answer over a subtly wrong
one whatever the style, concise or detailed, plain or markdown?

Data: the repository's `data/*_filtered.json` at a pinned commit (`rm_bench_files.json`), one
JSON array per domain file (chat, code, math, safety-refuse, safety-response) of records with an
`id`, a single-turn `prompt`, three `chosen` and three `rejected` answers in the styles concise,
detailed, detailed with markdown (index 0, 1, 2). A record's subset is its file's domain (the
`domain` value of the repository's total_dataset.json: safety-refuse, ...), its section the
domain the official code splits by (`startswith`: safety-refuse and safety-response are one
domain, safety), its uid `<subset>:<id>` (ids repeat across files).

Scoring (`scripts/utils.py` compute_accuracy): per record the 3x3 matrix of chosen style i
beating rejected style j (rows chosen, columns rejected); hard = the upper triangle (a chosen
answer plainer than the rejected one), normal = the diagonal, easy = the lower triangle, each the
mean of its three cells over the domain's records; a domain's score = the mean of the three (the
mean over its records of the comparisons won out of nine); hard, normal, easy and overall = the
unweighted means over the domains. So a record's values are its wins/9 and its triangles' wins/3,
and every key a weighted mean of subset means of them, records the clusters of its interval.

Judges: a reward model scores each of the six answers once (strictly higher wins; equal rewards
are a loss, as in the official matrix). A generative judge, which the official code does not
score, judges each of the nine pairs as a pairwise comparison with the template and orders of
any pairwise benchmark (RMB's rule for two orders); a tie counts half in the matrix.

A data folder lacking a selected domain's file is refused, naming the file and the
`--scenarios` that leave it out; a selection of some domains says in the summary that the
averages are over those domains, not comparable to RM-Bench's published overall.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path

from ..benchmark import OVERALL, PAIRS, Benchmark, ScoreKey, Section
from ..errors import DataError
from ..judgments import SCORE, Judged, Judgment, Pair
from ..records import Answer, Dataset, Message, Record, Selection, unpaired_surrogate
from . import register

# subset (a data file's domain) -> section (the official domain: split_dataset_by_domain's startswith)
SUBSETS = {"chat": "chat", "code": "code", "math": "math", "safety-refuse": "safety", "safety-response": "safety"}
DOMAINS = ("chat", "code", "math", "safety")
LEVELS = ("hard", "normal", "easy")  # the matrix's upper triangle, diagonal, lower triangle
STYLES = ("concise", "detailed", "markdown")  # the answers' order in chosen and rejected
KIND = "styles"  # the record kind: three chosen and three rejected answers, one per style
MANIFEST = "rm_bench_files.json"


def file_of(subset: str) -> str:
    return f"{subset}_filtered.json"


def level_of(chosen: int, rejected: int) -> str:
    """The difficulty a cell of the matrix counts in: hard where the chosen answer is the plainer."""
    return "hard" if chosen < rejected else "normal" if chosen == rejected else "easy"


def git_blob(data: bytes) -> str:
    """The git blob id of a file's bytes (`git hash-object`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@register
class RMBench(Benchmark):
    name = "rm-bench"
    title = "RM-Bench"
    sections = tuple(Section(domain, KIND, domain, domain.capitalize()) for domain in DOMAINS)
    leaderboard = ("chat", "math", "code", "safety", "easy", "normal", "hard")  # the official leaderboard's columns
    data_variable = "RM_BENCH_DATA"
    manifest_resource = MANIFEST
    published_resource = "rm_bench_published.json"
    scenarios_note = "5 domain files (chat 129, code 228, math, safety-refuse 284, safety-response 157 prompts)"
    subset_field = "domain"

    def score_keys(self) -> tuple[ScoreKey, ...]:
        """Each domain's mean over its records; hard, normal and easy the means over the domains
        of the domain's mean; overall the mean of the domains."""
        return (*(ScoreKey(domain, (domain,)) for domain in DOMAINS),
                *(ScoreKey(level, DOMAINS, value=level) for level in LEVELS),
                ScoreKey(OVERALL, DOMAINS))

    # -- data ------------------------------------------------------------------------------

    def check_root(self, root: Path) -> Path:
        """The folder holding the domain files: `root`, or its `data/` (a clone of the repository)."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: RM-Bench data folder not found (give --data DIR, set {self.data_variable}, "
                            "or run `rmb-judge data fetch --benchmark rm-bench`)")
        if not _holds_files(root) and _holds_files(root / "data"):
            return root / "data"
        return root

    def check_selection(self, selection: Selection) -> None:
        super().check_selection(selection)
        self.check_scenarios(selection, list(SUBSETS), "domain")

    def load(self, root: Path, selection: Selection | None = None) -> Dataset:
        """The selected domains' records; a selected domain whose file is missing is refused,
        naming it and the selection that leaves it out."""
        selection = selection or Selection()
        self.check_selection(selection)
        root = self.check_root(root)
        wanted = [subset for subset in SUBSETS if selection.wants_file(subset)]
        missing = [subset for subset in wanted if not (root / file_of(subset)).is_file()]
        if len(missing) == len(SUBSETS):
            raise DataError(f"{root}: no RM-Bench data file ({', '.join(map(file_of, SUBSETS))}; run `rmb-judge data "
                            f"fetch --benchmark rm-bench`, or give --data DIR / set {self.data_variable})")
        if missing:
            rest = [subset for subset in wanted if subset not in missing]
            if {"safety-refuse", "safety-response"} <= set(rest):
                rest = [s for s in rest if not s.startswith("safety")] + ["'safety-*'"]
            around = (f"or leave it out: {' '.join(f'--scenarios {s}' for s in rest)}" if rest
                      else f"or select the domains present with --scenarios (its domains: {', '.join(SUBSETS)})")
            raise DataError(f"{root}: {', '.join(map(file_of, missing))} missing (RM-Bench's "
                            f"{', '.join(missing)} domain); run `rmb-judge data fetch --benchmark rm-bench`, {around}")
        return self._load(root, wanted, selection)

    def load_every(self, root: Path) -> Dataset:
        """Every record of the domain files present (`data info` lists those missing)."""
        root = self.check_root(root)
        present = [subset for subset in SUBSETS if (root / file_of(subset)).is_file()]
        if not present:
            return self.load(root)  # (refused, naming the files)
        return self._load(root, present, Selection())

    def _load(self, root: Path, subsets: list[str], selection: Selection) -> Dataset:
        dataset = Dataset(root=root, records=[], scenarios_found=len(subsets))
        for subset in subsets:
            name = file_of(subset)
            dataset.files.append(name)
            seen: dict[str, Record] = {}
            chosen = []
            for record in self.read_file(root, root / name, dataset.sha256):
                if (first := seen.setdefault(record.uid, record)) is not record:
                    raise DataError(f"{name}: record {record.index}: id {record.extra['id']!r} repeats record "
                                    f"{first.index}")
                if selection.wants_record(record):
                    chosen.append(record)
            dataset.records.extend(chosen[: selection.limit] if selection.limit else chosen)
        return dataset

    def read_file(self, root: Path, path: Path, digests: dict[str, str] | None = None) -> Iterator[Record]:
        """A domain file's records. A file whose SHA-256 the manifest does not know (math) must
        be the pinned commit's bytes by its git blob id."""
        relative = path.relative_to(root).as_posix()
        subset = relative.removesuffix("_filtered.json")
        if subset not in SUBSETS:
            raise DataError(f"{relative}: not an RM-Bench data file (expected one of "
                            f"{', '.join(map(file_of, SUBSETS))})")
        try:
            raw = path.read_bytes()
            items = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{relative}: cannot read as JSON: {exc}") from None
        if digests is not None:
            digests[relative] = hashlib.sha256(raw).hexdigest()
        unhashed = {entry.path for entry in self.manifest().files if entry.sha256 is None}
        if relative in unhashed and (found := git_blob(raw)) != (pinned := _git_blobs()[relative]):
            raise DataError(f"{relative}: not the file of RM-Bench commit {self.manifest().commit[:7]} (git blob "
                            f"{found[:12]}…, expected {pinned[:12]}…)")
        if not isinstance(items, list):
            raise DataError(f"{relative}: expected a JSON list of records, got {type(items).__name__}")
        for index, item in enumerate(items):
            yield parse_record(item, subset, relative, index)

    def upstream_files(self, selection: Selection) -> int:
        return sum(1 for subset in SUBSETS if selection.wants_file(subset))

    def subset_files(self, subset: str, files: Mapping[str, str]) -> list[str]:
        """A domain's records come from its own file."""
        return [file_of(subset)]

    def notes(self, dataset: Dataset, selection: Selection) -> list[str]:
        """A selection of some domains (or one of safety's two files): the averages are over them."""
        subsets = {record.subset for record in dataset.records}
        if subsets == set(SUBSETS):
            return []
        domains = [domain for domain in DOMAINS if any(SUBSETS[s] == domain for s in subsets)]
        safety = [s for s in subsets if SUBSETS[s] == "safety"]
        alone = f"; safety is {safety[0]} alone" if len(safety) == 1 else ""
        named = domains[0] if len(domains) == 1 else f"{', '.join(domains[:-1])} and {domains[-1]}"
        return [f"RM-Bench: only the {named} domain{'s' if len(domains) > 1 else ''} selected{alone}: hard, normal, "
                f"easy and overall are means over {'these' if len(domains) > 1 else 'it'}, not comparable to "
                "RM-Bench's published ones (over chat, code, math and safety)"]

    # -- what the judge is asked -----------------------------------------------------------

    def judgments(self, record: Record, mode: str) -> list[Judgment]:
        """The nine pairs of a chosen style against a rejected style, numbered row by row
        (3 * chosen + rejected)."""
        if mode not in PAIRS:
            return super().judgments(record, mode)
        size = len(STYLES)
        return [Pair(record, i, j, size * i + j) for i in range(size) for j in range(size)]

    # -- how a record scores ---------------------------------------------------------------

    def record_score(self, record: Record, judged: Sequence[Sequence[Judged]], scores: Sequence[float]
                     ) -> dict[str, float]:
        """The comparisons won out of nine (SCORE: the record's share of its domain score) and
        of the three in each triangle (hard, normal, easy)."""
        cells: dict[str, list[float]] = {level: [] for level in LEVELS}
        for group, score in zip(judged, scores, strict=True):
            pair = group[0].judgment
            assert isinstance(pair, Pair)
            cells[level_of(pair.chosen, pair.rejected)].append(score)
        values = {level: sum(won) / len(won) for level, won in cells.items()}
        return {SCORE: sum(scores) / len(scores), **values}

    def chance(self, record: Record, scalar: bool, order: str | None = None) -> float:
        """A random judge wins each comparison half the time."""
        return 0.5

    def scenario_label(self, subset: str) -> str:
        return subset


def parse_record(item: object, subset: str, file: str, index: int) -> Record:
    where = f"{file}: record {index}"
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    if not isinstance(item.get("id"), int) or isinstance(item.get("id"), bool):
        raise DataError(f"{where}: id must be an integer")
    if not isinstance(item.get("prompt"), str) or not item["prompt"]:
        raise DataError(f"{where}: prompt must be a non-empty string")
    answers = {}
    for name in ("chosen", "rejected"):
        value = item.get(name)
        if not (isinstance(value, list) and len(value) == len(STYLES)
                and all(isinstance(text, str) and text for text in value)):
            raise DataError(f"{where}: {name} must be a list of {len(STYLES)} non-empty strings "
                            f"({', '.join(STYLES)})")
        answers[name] = tuple(Answer("", text) for text in value)
    if (found := unpaired_surrogate(item)) is not None:
        raise DataError(f"{where}: {found[0]} holds an unpaired surrogate ({found[1]}), not valid Unicode")
    section = SUBSETS[subset]
    return Record(KIND, section, section, subset, f"{subset}:{item['id']}", (Message("user", item["prompt"]),),
                  answers["chosen"], answers["rejected"], file, index, {"id": item["id"]})


def _holds_files(folder: Path) -> bool:
    return any((folder / file_of(subset)).is_file() for subset in SUBSETS)


def _git_blobs() -> dict[str, str]:
    """The manifest's git blob ids (path -> sha1), beside its SHA-256s."""
    manifest = json.loads((resources.files("rmb_judge.benchmarks") / MANIFEST).read_text("utf-8"))
    return dict(manifest["git_blobs"])
