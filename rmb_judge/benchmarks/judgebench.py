"""JudgeBench (Tan et al., "JudgeBench: A Benchmark for Evaluating LLM-based Judges", ICLR 2025,
arXiv:2410.12784): pairs of answers to hard questions (knowledge, reasoning, math, coding) where
one answer is objectively correct, judged as its own code judges them.

Data: the repository's `data/` files at a pinned commit (`judgebench_files.json`), JSON lines of
pair_id, original_id, source, question, response_model, response_A, response_B and label
("A>B" or "B>A"); the GPT-4o split (350 pairs) by default, `--split claude` the Claude split (270).
A record's subset is its `source` (14 mmlu-pro-* sources, livebench-reasoning, livebench-math,
livecodebench), its section the category the source starts with (mmlu-pro -> knowledge, ...:
`mmlu-pro-math` is knowledge), its uid the pair_id.

Scoring (`utils/metrics.py`, `run_judge.py`): each pair judged in both orders by default (the
data's order, then swapped; `--order fixed` is its single game: the data's order alone); per
pair a counter, +1 for each order whose decision is the label, -1 for each giving the flipped
label (a tie, no verdict or a failure counts 0); the pair is correct iff the counter is above 0;
a category's score is its correct pairs over its pairs, and `overall` the correct pairs over all
pairs (not the mean of the categories).

Judges (`utils/judges.py`): the `judgebench-arena-hard` template is its `arena_hard` judge (the
repository's templates byte for byte; the verdict is the one distinct `[[...]]` label of the
reply, `>>` read as `>`; several distinct labels are no verdict; none at all asks once more,
"continue your judgment and finish by outputting a final verdict label", and reads both replies
together), `judgebench-vanilla` its `vanilla` judge ("Output (a)" or "Output (b)" exactly). A
reward model decides each order as its `reward_model` judge does: A>B if the answer shown first
has the higher reward, else B>A; so equal rewards decide for the second-shown answer, which
in both orders is a counter of 0 (wrong whatever the label), and in a single game right
exactly when the label is B>A.

`judgebench_published.json`: the committed official outputs, scored with the official code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..benchmark import OVERALL, Benchmark, Option, ScoreKey, Section
from ..errors import DataError
from ..judgments import SCORE, Judged, Presentation
from ..records import Answer, Dataset, Message, Record, Selection, unpaired_surrogate
from ..verdicts import Style, Verdict, register_style
from . import register

if TYPE_CHECKING:
    from ..judgments import Judgment

SPLITS = {  # --split -> the data file
    "gpt": "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl",
    "claude": "dataset=judgebench,response_model=claude-3-5-sonnet-20240620.jsonl",
}
# category (score key) -> the prefix of its sources (run_judge.py line 94: source.startswith)
CATEGORIES = {"knowledge": "mmlu-pro", "reasoning": "livebench-reasoning", "math": "livebench-math",
              "coding": "livecodebench"}
LABELS = ("A>B", "B>A")
FIELDS = ("pair_id", "source", "question", "response_model", "response_A", "response_B", "label")

# utils/judges.py ArenaHard: re.compile("\[\[([AB<>=]+)\]\]"), its distinct matches, >> read as >
_ARENA_LABEL = re.compile(r"\[\[([AB<>=]+)\]\]")
_DECISIONS: dict[str, Verdict] = {"A>B": "A", "B>A": "B", "A=B": "tie"}


def arena_hard_decision(text: str) -> str | None:
    """The official arena_hard judge's decision on a judgment text (`get_score` and
    `.replace(">>", ">").strip()`): the one distinct label, None for none or several."""
    labels = set(_ARENA_LABEL.findall(text))
    return labels.pop().replace(">>", ">").strip() if len(labels) == 1 else None


def _read_arena_hard(text: str) -> Verdict | None:
    """A, B or tie from the official decision; a decision that is none of A>B, B>A, A=B (a
    label such as [[A<B]] or [[AB]]) counts 0 in the official counter, as no verdict does."""
    decision = arena_hard_decision(text)
    return None if decision is None else _DECISIONS.get(decision)


def _read_vanilla(text: str) -> Verdict | None:
    """utils/judges.py Vanilla: the stripped output is exactly "Output (a)" or "Output (b)"."""
    return {"Output (a)": "A", "Output (b)": "B"}.get(text.strip())  # type: ignore[return-value]


register_style(Style("judgebench-arena-hard", _read_arena_hard, "one [[A>B]]-style label (JudgeBench arena_hard)",
                     labelled=lambda text: _ARENA_LABEL.search(text) is not None))
register_style(Style("judgebench-vanilla", _read_vanilla, '"Output (a)" or "Output (b)" (JudgeBench vanilla)'))


@register
class JudgeBench(Benchmark):
    name = "judgebench"
    title = "JudgeBench"
    sections = tuple(Section(key, "pairwise", key, key.capitalize()) for key in CATEGORIES)
    leaderboard = tuple(CATEGORIES)
    data_variable = "JUDGEBENCH_DATA"
    manifest_resource = "judgebench_files.json"
    published_resource = "judgebench_published.json"
    scenarios_note = "the GPT-4o split (350 pairs) and the Claude split (270 pairs), a file each"
    subset_field = "source"
    options = (Option("--split", tuple(SPLITS), "gpt", "gpt (the GPT-4o split, 350 pairs) or claude (270)"),)
    orders = ("both", "fixed")
    default_order = "both"
    default_template = "judgebench-arena-hard"
    scalar_orders = True

    def score_keys(self) -> tuple[ScoreKey, ...]:
        """Each category's correct pairs over its pairs; overall, the correct pairs over all."""
        keys = tuple(CATEGORIES)
        return (*(ScoreKey(key, (key,)) for key in keys), ScoreKey(OVERALL, keys, across="records"))

    # -- data ------------------------------------------------------------------------------

    def check_root(self, root: Path) -> Path:
        """The folder holding the data files: `root`, or its `data/` (a clone of the repository)."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: JudgeBench data folder not found (give --data DIR, set {self.data_variable}, "
                            "or run `rmb-judge data fetch --benchmark judgebench`)")
        if not any((root / name).is_file() for name in SPLITS.values()) and (root / "data").is_dir():
            return root / "data"
        return root

    def check_selection(self, selection: Selection) -> None:
        super().check_selection(selection)
        sources = sorted({f"mmlu-pro-{s}" for s in ("biology", "business", "chemistry", "computer science",
                                                    "economics", "engineering", "health", "history", "law", "math",
                                                    "other", "philosophy", "physics", "psychology")}
                         | {"livebench-reasoning", "livebench-math", "livecodebench"})
        self.check_scenarios(selection, sources, "source")

    def load(self, root: Path, selection: Selection | None = None) -> Dataset:
        selection = selection or Selection()
        self.check_selection(selection)
        return self._load(root, [SPLITS[self.option(selection, "split")]], selection)

    def load_every(self, root: Path) -> Dataset:
        return self._load(root, list(SPLITS.values()), Selection())

    def _load(self, root: Path, names: list[str], selection: Selection) -> Dataset:
        root = self.check_root(root)
        found = [name for name in names if (root / name).is_file()]
        if not found:
            raise DataError(f"{root}: no JudgeBench data file ({', '.join(names)}; run `rmb-judge data fetch "
                            f"--benchmark judgebench`, or give --data DIR / set {self.data_variable})")
        dataset = Dataset(root=root, records=[], scenarios_found=len(found))
        seen: dict[str, Record] = {}
        for name in found:
            dataset.files.append(name)
            by_source: dict[str, list[Record]] = {}
            for record in self.read_file(root, root / name, dataset.sha256):
                if (first := seen.setdefault(record.uid, record)) is not record:
                    raise DataError(f"{record.file}: record {record.index}: pair_id {record.uid!r} repeats record "
                                    f"{first.index}{'' if first.file == record.file else f' of {first.file}'}")
                if selection.wants_file(record.subset) and selection.wants_record(record):
                    by_source.setdefault(record.subset, []).append(record)
            for records in by_source.values():  # --limit: the first N of each source, in file order
                dataset.records.extend(records[: selection.limit] if selection.limit else records)
        dataset.records.sort(key=lambda r: (r.file, r.index))
        return dataset

    def read_file(self, root: Path, path: Path, digests: dict[str, str] | None = None) -> Iterator[Record]:
        relative = path.relative_to(root).as_posix()
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{relative}: cannot read as UTF-8 JSON lines: {exc}") from None
        if digests is not None:
            digests[relative] = hashlib.sha256(raw).hexdigest()
        for index, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{relative}: line {index + 1}: not JSON: {exc}") from None
            yield parse_record(item, relative, index)

    def upstream_files(self, selection: Selection) -> int:
        return 1

    # -- what the judge is asked -----------------------------------------------------------

    def orders_for(self, judgment: Judgment, mode: str, seed: int, scalar: bool = False) -> tuple[str, ...]:
        """The data's order first ("AB" where its label is A>B: the chosen answer is its A);
        `both` then the swapped one, `fixed` (its single game) nothing else."""
        data = "AB" if judgment.record.extra["label"] == "A>B" else "BA"
        return (data,) if mode == "fixed" else (data, "BA" if data == "AB" else "AB")

    def reward_verdict(self, presentation: Presentation, rewards: Sequence[float]) -> str | float | None:
        """The reward_model judge: A>B if the first-shown answer's reward is higher, else B>A."""
        first, second = rewards
        return "A" if first > second else "B"

    # -- how a record scores ---------------------------------------------------------------

    def judgment_score(self, judged: Sequence[Judged]) -> float:
        """The counter over the orders: +1 for each order agreeing with the label, -1 for each
        giving the flipped label (a tie, no verdict or a failure counts 0); correct iff above 0."""
        counter = sum({"win": 1, "loss": -1}.get(j.outcome or "", 0) for j in judged)
        return float(counter > 0)

    def record_score(self, record: Record, judged: Sequence[Sequence[Judged]], scores: Sequence[float]
                     ) -> dict[str, float]:
        return {SCORE: scores[0]}

    def chance(self, record: Record, scalar: bool, order: str | None = None) -> float:
        """A random generative judge (never a tie) is right in both orders a quarter of the time,
        in one half; a random reward model decides both orders alike: half."""
        return 0.5 if scalar or order == "fixed" else 0.25


def parse_record(item: object, file: str, index: int) -> Record:
    where = f"{file}: line {index + 1}"
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    for name in FIELDS:
        if not isinstance(item.get(name), str):
            raise DataError(f"{where}: {name} must be a string")
    if (found := unpaired_surrogate(item)) is not None:
        raise DataError(f"{where}: {found[0]} holds an unpaired surrogate ({found[1]}), not valid Unicode")
    label, source = item["label"], item["source"]
    if label not in LABELS:
        raise DataError(f"{where}: label must be A>B or B>A, got {label!r}")
    category = next((key for key, prefix in CATEGORIES.items() if source.startswith(prefix)), None)
    if category is None:
        raise DataError(f"{where}: source {source!r} is none of JudgeBench's ({', '.join(CATEGORIES.values())})")
    first, second = (Answer(item["response_model"], item[f"response_{side}"]) for side in "AB")
    chosen, rejected = (first, second) if label == "A>B" else (second, first)
    return Record("pairwise", category, category, source, item["pair_id"], (Message("user", item["question"]),),
                  (chosen,), (rejected,), file, index, {"label": label})
