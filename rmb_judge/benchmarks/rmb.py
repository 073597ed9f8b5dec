"""RMB (Zhou et al., "RMB: Comprehensively Benchmarking Reward Models in LLM Alignment",
ICLR 2025): 49 scenarios under two goals, helpfulness and harmlessness, each judged pairwise
(chosen vs rejected) and best-of-N (the best answer must beat every loser).

The official layout is `{Pairwise_set,BoN_set}/{Helpfulness,Harmlessness}/.../<scenario>.json`,
each file a JSON list of records whose `category_path` is the file path without `.json`.
`rmb_files.json` pins the upstream files (commit, sizes, SHA-256s); `rmb_published.json`
holds the paper's leaderboard as transcribed. A section score is the mean over its records
(micro average), as in the RMB reference evaluation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..benchmark import PAIRS, SCORE, Benchmark, Section
from ..errors import DataError
from ..judgments import Judgment, Pair
from ..records import (
    ROLES,
    SURROGATE_ESCAPE,
    Answer,
    Dataset,
    Message,
    Record,
    Selection,
    unpaired_surrogate,
)
from . import register

if TYPE_CHECKING:
    from ..judgments import Judged

SETS = {"pairwise": "Pairwise_set", "bon": "BoN_set"}  # kind -> folder
GOALS = {"helpfulness": "Helpfulness", "harmlessness": "Harmlessness"}  # goal -> folder
UIDS = {"pairwise": "pair_uid", "bon": "bon_uid"}  # kind -> its records' uid field
# The harmlessness scenarios' names, which their files (S1.json ...) leave out: the rows of the
# RMB repository's harmlessness dataset table (fig/harmless_dataset_table.pdf), in file order
# (each file's pairwise and Best-of-N record counts match its row: S1 459 and 111, ...), which
# are Llama Guard 2's hazard categories. The table's last row, "Multi", is the file multi.json.
HARM_SCENARIOS = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation", "S5": "Specialized Advice", "S6": "Privacy",
    "S7": "Intellectual Property", "S8": "Indiscriminate Weapons", "S9": "Hate",
    "S10": "Suicide & Self-Harm", "S11": "Sexual Content",
}


@register
class RMB(Benchmark):
    name = "rmb"
    title = "RMB"
    sections = (
        Section("pairwise_helpfulness", "pairwise", "helpfulness", "Help Pair"),
        Section("pairwise_harmlessness", "pairwise", "harmlessness", "Harm Pair"),
        Section("bon_helpfulness", "bon", "helpfulness", "Help BoN"),
        Section("bon_harmlessness", "bon", "harmlessness", "Harm BoN"),
    )
    # the paper's leaderboard columns
    leaderboard = ("bon_helpfulness", "pairwise_helpfulness", "bon_harmlessness", "pairwise_harmlessness")
    data_variable = "RMB_DATA"
    manifest_resource = "rmb_files.json"
    published_resource = "rmb_published.json"
    scenarios_note = "49 scenarios, each a pairwise and a Best-of-N file upstream"
    files_noun = "scenario files"
    subset_field = "category_path"
    judgment_field = "loser_index"
    selection_flags = ("--sets", "--sections")

    def scenario_files(self, root: Path, kinds: Iterable[str], goals: Iterable[str]) -> list[Path]:
        """Every scenario file present under root for these kinds and goals, sorted."""
        found: list[Path] = []
        for kind in kinds:
            for goal in goals:
                folder = root / SETS[kind] / GOALS[goal]
                if folder.is_dir():
                    found.extend(sorted(folder.rglob("*.json")))
        return found

    def check_root(self, root: Path) -> Path:
        """The dataset folder `root` names: itself, or the RMB_dataset/ inside it (`--data` given
        a clone of the upstream repository)."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"{root}: RMB data folder not found (give --data DIR, set {self.data_variable}, "
                "or run `rmb-judge data fetch`)"
            )
        if _holds_sets(root):
            return root
        if _holds_sets(inner := root / self.manifest().folder):
            return inner
        entries = [entry for entry in _listed(root) if not entry.name.startswith(".")]
        if entries:  # an empty folder (or one holding only a fetch's hidden staging folder) is just unfilled
            below = next((folder for entry in entries if entry.is_dir()
                          for folder in (entry, *_listed(entry)) if _holds_sets(folder)), None)
            held = f"; {below} holds one: give --data {below}" if below else ""
            raise DataError(f"{root}: not an RMB_dataset folder (no Pairwise_set/ or BoN_set/ inside){held}")
        return root

    def check_selection(self, selection: Selection) -> None:
        super().check_selection(selection)
        for name in selection.sets or ():
            if name not in SETS:
                raise DataError(f"--sets: unknown set {name!r} (choose from {', '.join(SETS)})")
        for name in selection.sections or ():
            if name not in GOALS:
                raise DataError(f"--sections: unknown section {name!r} (choose from {', '.join(GOALS)})")
        prefixes = self._prefixes(selection)
        upstream = [e.path.removesuffix(".json") for e in self.manifest().files if e.path.startswith(prefixes)]
        self.check_scenarios(selection, upstream)

    def load(self, root: Path, selection: Selection | None = None) -> Dataset:
        """Load and select records; raises DataError naming the file and record on bad input,
        or when the root holds no scenario file at all (an unfilled or failed download)."""
        selection = selection or Selection()
        self.check_selection(selection)
        root = self.check_root(root)
        files = self.scenario_files(root, selection.sets or self.kinds, selection.sections or self.goals)
        if not files and not self.scenario_files(root, SETS, GOALS):
            raise DataError(
                f"{root}: no RMB scenario files found (run `rmb-judge data fetch`, "
                f"or give --data DIR / set {self.data_variable})"
            )
        dataset = Dataset(root=root, records=[], scenarios_found=len(files))
        first: dict[tuple[str, str], Record] = {}  # each (scenario, uid)'s record
        for path in files:
            relative = path.relative_to(root).as_posix()
            if not selection.wants_file(relative.removesuffix(".json")):
                continue
            dataset.files.append(relative)
            read = list(self.read_file(root, path, dataset.sha256))
            for record in read:
                if (seen := first.setdefault((record.subset, record.uid), record)) is not record:
                    raise DataError(
                        f"{record.file}: record {record.index}: {UIDS[record.kind]} {record.uid!r} repeats record "
                        f"{seen.index}{'' if seen.file == record.file else f' of {seen.file}'} in scenario "
                        f"{record.subset} (scores, compare and --precision tell records apart by it)"
                    )
            chosen = [r for r in read if selection.wants_record(r)]
            dataset.records.extend(chosen[: selection.limit] if selection.limit else chosen)
        return dataset

    def read_file(self, root: Path, path: Path, digests: dict[str, str] | None = None) -> Iterator[Record]:
        """The file's records; its SHA-256 goes into `digests` (for the run manifest)."""
        relative = path.relative_to(root).as_posix()
        try:
            raw = path.read_bytes()
            if digests is not None:
                digests[relative] = hashlib.sha256(raw).hexdigest()
            items = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{relative}: cannot read as JSON: {exc}") from None
        if not isinstance(items, list):
            raise DataError(f"{relative}: expected a JSON list of records, got {type(items).__name__}")
        kind = next(k for k, v in SETS.items() if relative.startswith(v + "/"))
        goal = next(k for k, v in GOALS.items() if relative.split("/")[1] == v)
        section = self.section(kind, goal).key
        careful = SURROGATE_ESCAPE.search(raw) is not None  # the field walk only where it can find one
        for index, item in enumerate(items):
            record = parse_record(item, kind, goal, section, relative, index)
            if careful and (found := unpaired_surrogate(item)):
                name, char = found
                raise DataError(
                    f"{relative}: record {index}: {name} holds an unpaired surrogate ({char}), "
                    "not valid Unicode"
                )
            yield record

    def upstream_files(self, selection: Selection) -> int:
        prefixes = self._prefixes(selection)
        return sum(1 for entry in self.manifest().files if entry.path.startswith(prefixes))

    def subset_files(self, subset: str, files: Mapping[str, str]) -> list[str]:
        """A scenario's records come from its own file."""
        return [f"{subset}.json"]

    def _prefixes(self, selection: Selection) -> tuple[str, ...]:
        """The folders of the selected sets and sections."""
        return tuple(f"{SETS[k]}/{GOALS[g]}/" for k in selection.sets or SETS for g in selection.sections or GOALS)

    def judgments(self, record: Record, mode: str) -> list[Judgment]:
        """A pairwise record's one pair; a best-of-N record's pair of the best answer against
        each loser, numbered by the loser (samples.jsonl's loser_index)."""
        if mode not in PAIRS:
            return super().judgments(record, mode)
        if record.kind == "pairwise":
            return [Pair(record)]
        return [Pair(record, 0, i, i) for i in range(len(record.rejected))]

    def record_score(self, record: Record, judged: Sequence[Sequence[Judged]], scores: Sequence[float]
                     ) -> dict[str, float]:
        """A pairwise record's score is its pair's; a best-of-N record's is 1 only if the best
        answer wins against every loser (a tie or a loss is not a win)."""
        if record.kind == "pairwise":
            return {SCORE: scores[0]}
        return {SCORE: float(all(score == 1.0 for score in scores))}

    def chance(self, record: Record, scalar: bool, order: str | None = None) -> float:
        """0.5 on a pairwise record; on best-of-N a random pairwise judge must win all N-1
        comparisons (0.5**(N-1)), while a random scalar pick is right 1/N of the time."""
        n = len(record.rejected) + 1
        if record.kind == "pairwise":
            return 0.5
        return 1 / n if scalar else 0.5 ** (n - 1)

    def scenario_label(self, subset: str) -> str:
        """The path without its set and goal folders, which the section already says; a
        harmlessness scenario with its name (`S1 Violent Crimes`)."""
        label = "/".join(subset.split("/")[2:]) or subset
        if subset.split("/")[1:2] == [GOALS["harmlessness"]] and label in HARM_SCENARIOS:
            return f"{label} {HARM_SCENARIOS[label]}"
        return label


def _holds_sets(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in SETS.values())


def _listed(folder: Path) -> list[Path]:
    """A folder's entries, sorted (none if it cannot be read)."""
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def parse_record(item: object, kind: str, goal: str, section: str, file: str, index: int) -> Record:
    where = f"{file}: record {index}"
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    try:
        uid = str(item[UIDS[kind]])
        conversation = tuple(_message(m, where) for m in item["conversation_input"])
        if kind == "pairwise":
            chosen = _answer(item["chosen"], where, "chosen")
            rejected: tuple[Answer, ...] = (_answer(item["reject"], where, "reject"),)
        else:
            chosen = _answer(item["bon_best"], where, "bon_best")
            rejected = tuple(_answer(a, where, "loser_list") for a in item["loser_list"])
    except KeyError as exc:
        raise DataError(f"{where}: missing field {exc.args[0]!r}") from None
    except TypeError as exc:
        raise DataError(f"{where}: malformed record ({exc})") from None
    if not conversation or conversation[-1].role != "user":
        raise DataError(f"{where}: conversation_input must end with a user message")
    if not rejected:
        raise DataError(f"{where}: no answer to compare against")
    category_path = item.get("category_path") or file.removesuffix(".json")
    return Record(kind, goal, section, category_path, uid, conversation, (chosen,), rejected, file, index)


def _message(item: object, where: str) -> Message:
    if not isinstance(item, dict) or item.get("role") not in ROLES:
        raise DataError(f"{where}: conversation message without a valid role")
    if not isinstance(item.get("content"), str):
        raise DataError(f"{where}: conversation message content must be a string")
    return Message(item["role"], item["content"])


def _answer(item: object, where: str, name: str) -> Answer:
    if not isinstance(item, dict) or not isinstance(item.get("answer"), str):
        raise DataError(f"{where}: {name} must be an object with a string 'answer'")
    return Answer(str(item.get("llm_name", "")), item["answer"])
