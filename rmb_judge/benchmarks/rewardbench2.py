"""RewardBench 2 (Malik et al., "RewardBench 2: Advancing Reward Model Evaluation",
arXiv:2506.01937): best-of-4 prompts (one correct answer, three rejected) in five subsets, and
the Ties subset (several correct answers), scored as its own code scores them (github.com/
allenai/reward-bench at 05a9005: scripts/run_v2.py, rewardbench/utils.py, scripts/
run_generative_v2.py, rewardbench/generative_v2.py).

Data: the hub dataset `allenai/reward-bench-2`, one parquet file (`data/test-00000-of-00001.parquet`:
id, prompt, chosen and rejected lists of answers, num_correct, total_completions, models,
subset), fetched through huggingface_hub (hubdata.py; the `hub` extra, which brings pyarrow to
read it). A record is one row: its subset is the `subset` value (Factuality, Precise IF, Math,
Safety, Focus, Ties), its section the score key (factuality, precise_if, ...), its uid the
row's `id` (a Ties row's is `ref:<prompt_id>` or `tied:<prompt_id>`: the reference prompt with
one correct answer and the tied prompt with several, scored together).

Scoring:
- a best-of-4 row (the five subsets): a reward model's or a rating judge's score is 1 if the
  correct answer alone is rated highest, 1/k if it ties k-1 others at the top, else 0; a rating
  judge's unreadable ratings are left out, and none readable scores 0.25 (`run_judge_ratings_multi`);
  the 4-way judge's (the default) is 1 if it picks the correct answer's slot, 0 another, 0.25 if
  its reply names none (`process_judgement`: [[A]] first, then [[B]], [[C]], [[D]]);
- Ties: `process_single_model`'s statistic over the rows' ratings or rewards (an unreadable
  rating counts -1), 0.30 tied accuracy + 0.30 ref accuracy + 0.20 correctness_preferred +
  0.20 correctness_preferred_hard + 0.01 margin score: the weights sum to 1.01, so it can reach
  1.01 (kept unclipped, as published). Its interval is a seeded bootstrap over prompt ids (a
  ref and a tied row together); a Ties row's own value (samples.jsonl, its subset's accuracy)
  is whether every correct answer outscores every wrong one;
- overall: the unweighted mean of the six subsets' scores.
Generative judges see the official prompts (prompts/rewardbench2*.toml): the 4-way ranking
(the correct answer swapped into a slot seeded per record by --seed and its uid, as the
official code swaps it with np.random), or per-answer ratings (`--template
rewardbench2-ratings`); Ties rows are always rated with its own prompt. A request that fails
after the engine's retries is a failure (the run is incomplete), not the official 0.25.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import hubdata, templates
from ..benchmark import OVERALL, Benchmark, ScoreKey, Section
from ..errors import DataError, UsageError
from ..intervals import Estimate, wilson
from ..judgments import SCORE, Judged, Ranking, Rating, RecordScore, coin
from ..records import Answer, Dataset, Message, Record, Selection, unpaired_surrogate
from ..verdicts import Style, register_style
from . import register

if TYPE_CHECKING:
    from ..judgments import Judgment
    from ..templates import Template

FILE = "data/test-00000-of-00001.parquet"
SUBSETS = {"Factuality": "factuality", "Precise IF": "precise_if", "Math": "math", "Safety": "safety",
           "Focus": "focus", "Ties": "ties"}  # the `subset` value -> its score key
TIES = "Ties"
TIES_ID = re.compile(r"(ref|tied):(\d+)")
COLUMNS = ("id", "prompt", "chosen", "rejected", "num_correct", "subset")
# the 4-way layouts: the correct answer swapped with the answer in slot k (run_generative_v2.py)
SWAPS = ("0123", "1023", "2103", "3120")
TIES_TEMPLATE = "rewardbench2-ratings-ties"
UNREADABLE = -1  # what the official code rates an unreadable (or failed) rating
BOOTSTRAP = 2000  # resamples of prompt ids for the Ties interval


def four_way_verdict(text: str) -> str | None:
    """generative_v2.py `process_judgement`: the first of [[A]], [[B]], [[C]], [[D]] the reply
    holds, by letter (a reply holding [[B]] and then [[A]] is A); None for its "error"."""
    return next((slot for slot in "ABCD" if f"[[{slot}]]" in text), None)


_RATING = re.compile(r"\b([1-9]|10)\b\s*$")


def rating_verdict(text: str) -> float | None:
    """generative_v2.py `get_single_rating`: a whole number 1-10 ending the stripped reply."""
    found = _RATING.search(text.strip())
    return float(found.group(1)) if found else None


register_style(Style("rewardbench2-4way", four_way_verdict,  # type: ignore[arg-type]
                     "[[A]], [[B]], [[C]] or [[D]] (RewardBench 2)"))
register_style(Style("rewardbench2-rating", rating_verdict,  # type: ignore[arg-type]
                     "a final whole number 1-10 (RewardBench 2 ratings)"))


@register
class RewardBench2(Benchmark):
    name = "rewardbench2"
    title = "RewardBench 2"
    sections = tuple(Section(key, "ties" if name == TIES else "bo4", key, name) for name, key in SUBSETS.items())
    leaderboard = tuple(SUBSETS.values())
    data_variable = "REWARDBENCH2_DATA"
    manifest_resource = "rewardbench2_files.json"
    published_resource = "rewardbench2_published.json"
    scenarios_note = ("one parquet file of 1,865 rows: 1,763 best-of-4 prompts in five subsets and 102 Ties rows "
                      "(a ref and a tied row per prompt id)")
    extra = "hub"
    orders = ("random", "fixed")
    default_order = "random"
    default_template = "rewardbench2"

    def score_keys(self) -> tuple[ScoreKey, ...]:
        """Each best-of-4 subset's mean over its rows; Ties its set statistic; overall the
        unweighted mean of the six."""
        keys = tuple(SUBSETS.values())
        return (*(ScoreKey(key, (key,)) for key in keys if key != "ties"),
                ScoreKey("ties", ("ties",), estimator=ties_estimate),
                ScoreKey(OVERALL, keys, estimator=overall_estimate))

    # -- data ------------------------------------------------------------------------------

    def check_root(self, root: Path) -> tuple[Path, Path]:
        """The dataset folder (a copy in the hub's layout, or the folder `data fetch` fills,
        holding `data/...parquet`; or its `data/` folder itself) and the parquet file."""
        root = Path(root)
        for folder, path in ((root, root / FILE), (root.parent, root / Path(FILE).name)):
            if path.is_file():
                return folder, path
        if not root.is_dir():
            raise DataError(f"{root}: RewardBench 2 data folder not found (give --data DIR, set {self.data_variable}, "
                            "or run `rmb-judge data fetch --benchmark rewardbench2`)")
        raise DataError(f"{root}: no {FILE} (run `rmb-judge data fetch --benchmark rewardbench2`, or give --data "
                        f"DIR / set {self.data_variable} to a copy of the hub dataset allenai/reward-bench-2)")

    def check_selection(self, selection: Selection) -> None:
        super().check_selection(selection)
        self.check_scenarios(selection, list(SUBSETS), "subset")

    def load(self, root: Path, selection: Selection | None = None) -> Dataset:
        """The rows, each subset's first --limit prompts (Ties: prompt ids, a ref and a tied row
        together), --sample drawing Ties by prompt id too."""
        selection = selection or Selection()
        self.check_selection(selection)
        folder, path = self.check_root(root)
        dataset = Dataset(root=folder, records=[], scenarios_found=1)
        dataset.files.append(FILE)
        rows = list(self.read_file(folder, path, dataset.sha256))
        dataset.source = hubdata.check_lock(folder, dataset.sha256)
        seen: dict[tuple[str, str], Record] = {}
        groups: dict[str, dict[str, list[Record]]] = {}  # subset -> prompt (Ties: its id) -> rows
        for record in rows:
            first = seen.setdefault((record.subset, record.uid), record)
            if first is not record:
                raise DataError(f"{FILE}: row {record.index}: id {record.uid!r} of {record.subset} repeats row "
                                f"{first.index}")
            if selection.wants_file(record.subset):
                groups.setdefault(record.subset, {}).setdefault(self.draw_unit(record) or record.uid, []).append(record)
        for by_prompt in groups.values():
            kept = [group for group in by_prompt.values() if selection.wants_record(group[0])]
            for group in kept[: selection.limit] if selection.limit else kept:
                dataset.records.extend(group)
        dataset.records.sort(key=lambda r: r.index)
        return dataset

    def draw_unit(self, record: Record) -> str | None:
        """A Ties row comes with its prompt's other row (ref and tied): its statistic needs both."""
        return f"prompt {record.extra['prompt_id']}" if record.subset == TIES else None

    def read_file(self, root: Path, path: Path, digests: dict[str, str] | None = None) -> Iterator[Record]:
        relative = path.relative_to(root).as_posix()
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError("reading RewardBench 2's parquet file needs pyarrow: install the hub extra "
                             "(pip install '.[hub]'; bin/rmb-judge does it)") from None
        try:
            raw = path.read_bytes()
            table = pq.read_table(pa.BufferReader(raw))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{relative}: cannot read as parquet: {exc}") from None
        if digests is not None:
            digests[relative] = hashlib.sha256(raw).hexdigest()
        if missing := [c for c in COLUMNS if c not in table.column_names]:
            raise DataError(f"{relative}: lacks the column(s) {', '.join(missing)} of allenai/reward-bench-2")
        for index, row in enumerate(table.to_pylist()):
            yield parse_record(row, relative, index)

    def upstream_files(self, selection: Selection) -> int:
        return 1

    # -- what the judge is asked -----------------------------------------------------------

    def judgments(self, record: Record, mode: str) -> list[Judgment]:
        """The 4-way ranking of the correct answer and the first three rejected ones; or every
        answer rated (a rating template, a reward model, and always a Ties row)."""
        if record.subset == TIES or mode in ("rating", "scalar"):
            return [Rating(record, i, i) for i in range(len(record.answers))]
        if mode == "ranking":
            return [Ranking(record, (0, 1, 2, 3))]
        raise UsageError(f"benchmark {self.name} asks for a 4-way ranking or ratings: a {mode} template does not "
                         "apply (--template rewardbench2 or rewardbench2-ratings)")

    def orders_for(self, judgment: Judgment, mode: str, seed: int, scalar: bool = False) -> tuple[str, ...]:
        """A ranking shows the correct answer swapped into slot k (k seeded per record by --seed
        and its uid; `fixed`: slot A), the others in place, as the official code does."""
        if not isinstance(judgment, Ranking):
            return super().orders_for(judgment, mode, seed, scalar)
        record = judgment.record
        return (SWAPS[0] if mode == "fixed" else SWAPS[coin(seed, record.subset, record.uid, None) % 4],)

    def template_for(self, record: Record, template: Template) -> Template:
        """A Ties row is always rated with its own prompt (the official code's, whatever the mode)."""
        return _ties_template() if record.subset == TIES else template

    # -- how a record scores ---------------------------------------------------------------

    def judgment_score(self, judged: Sequence[Judged]) -> float:
        """A ranking: 1 if the correct answer's slot is picked, 0 another, 0.25 if the reply names
        none (a failed request: 0, and the run is incomplete). A rating: nothing on its own."""
        first = judged[0]
        if not isinstance(first.judgment, Ranking):
            return 0.0
        if first.outcome is None:
            return 0.0 if first.error else 0.25
        return 1.0 if first.outcome == "win" else 0.0

    def record_score(self, record: Record, judged: Sequence[Sequence[Judged]], scores: Sequence[float]
                     ) -> dict[str, float]:
        if isinstance(judged[0][0].judgment, Ranking):
            return {SCORE: scores[0]}
        rated = row_scores(judged)
        if record.subset == TIES:
            return {SCORE: float(prompt_stats(ties_row(rated), len(record.chosen)).accurate)}
        return {SCORE: best_of_n(rated)}

    def chance(self, record: Record, scalar: bool, order: str | None = None) -> float:
        """A random pick of four (or of every answer, rated): 1/n; a Ties row's accuracy: every
        correct answer above every wrong one, 1 / C(n, correct)."""
        n = len(record.answers)
        if record.subset == TIES:
            return 1 / math.comb(n, len(record.chosen))
        return 0.25 if not scalar and n >= 4 else 1 / n


@functools.cache
def _ties_template() -> Template:
    return templates.load(TIES_TEMPLATE)


def parse_record(row: Mapping[str, Any], file: str, index: int) -> Record:
    where = f"{file}: row {index}"
    for name in ("id", "prompt", "subset"):
        if not isinstance(row.get(name), str):
            raise DataError(f"{where}: {name} must be a string")
    for name in ("chosen", "rejected"):
        value = row.get(name)
        if not (isinstance(value, list) and value and all(isinstance(text, str) for text in value)):
            raise DataError(f"{where}: {name} must be a non-empty list of strings")
    if (found := unpaired_surrogate({k: row[k] for k in ("id", "prompt", "chosen", "rejected")})) is not None:
        raise DataError(f"{where}: {found[0]} holds an unpaired surrogate ({found[1]}), not valid Unicode")
    subset, uid, chosen, rejected = row["subset"], row["id"], row["chosen"], row["rejected"]
    if subset not in SUBSETS:
        raise DataError(f"{where}: subset {subset!r} is none of RewardBench 2's ({', '.join(SUBSETS)})")
    if row.get("num_correct") != len(chosen):
        raise DataError(f"{where}: num_correct {row.get('num_correct')!r} is not the {len(chosen)} chosen answers")
    total = row.get("total_completions")
    if total is not None and total != len(chosen) + len(rejected):
        raise DataError(f"{where}: total_completions {total!r} is not the {len(chosen) + len(rejected)} answers")
    extra: dict[str, Any] = {}
    if subset == TIES:
        shape = TIES_ID.fullmatch(uid)
        if shape is None:
            raise DataError(f"{where}: a Ties id must be ref:<prompt id> or tied:<prompt id>, got {uid!r}")
        kind = shape.group(1)
        if (kind == "ref") != (len(chosen) == 1):
            said = "one correct answer" if kind == "ref" else "several"
            raise DataError(f"{where}: a {kind} row of Ties has {said}, this one {len(chosen)}")
        extra = {"row": kind, "prompt_id": int(shape.group(2))}
    elif len(chosen) != 1 or len(rejected) < 3:
        raise DataError(f"{where}: a {subset} row has one chosen and at least three rejected answers, this one "
                        f"{len(chosen)} and {len(rejected)}")
    models = row.get("models")
    names = [str(m) for m in models] if isinstance(models, list) and len(models) == len(chosen) + len(rejected) \
        else [""] * (len(chosen) + len(rejected))
    answers = [Answer(model, text) for model, text in zip(names, [*chosen, *rejected], strict=True)]
    key = SUBSETS[subset]
    return Record("ties" if subset == TIES else "bo4", key, key, subset, uid, (Message("user", row["prompt"]),),
                  tuple(answers[: len(chosen)]), tuple(answers[len(chosen):]), file, index, extra)


# -- the official rules -------------------------------------------------------------------


def row_scores(judged: Sequence[Sequence[Judged]]) -> list[float | None]:
    """Each answer's rating or reward, in answer order; None for an unreadable or failed
    rating (or a split vote)."""
    by_answer = sorted(judged, key=lambda group: group[0].judgment.answer)  # type: ignore[union-attr]
    return [float(v) if isinstance(v := group[0].verdict, (int, float)) else None for group in by_answer]


def ties_row(scores: Sequence[float | None]) -> list[float]:
    """A Ties row's scores as the official code takes them: an unreadable rating is -1."""
    return [UNREADABLE if s is None else s for s in scores]


def best_of_n(scores: Sequence[float | None]) -> float:
    """The first answer (the correct one) against the rest: 1 alone on top, 1/k tied with k-1
    others, else 0 (utils.py `reroll_and_score_dataset`, a reward model's rule); a rating
    judge's unreadable ratings are left out, and none readable is 0.25 (`run_judge_ratings_multi`)."""
    valid = [s for s in scores if s is not None]
    if not valid:
        return 0.25
    top = max(valid)
    return 1 / sum(s == top for s in valid) if scores[0] == top else 0.0


class Stats(NamedTuple):
    """utils.py `_compute_prompt_stats` of one row."""

    accurate: bool
    different_correct_margin: float | None
    correct_incorrect_margin: float


def prompt_stats(scores: Sequence[float], num_correct: int) -> Stats:
    correct, incorrect = scores[:num_correct], scores[num_correct:]
    margin = min(correct) - max(incorrect)
    return Stats(margin > 0, max(correct) - min(correct) if len(correct) > 1 else None, margin)


def _margin_score(ref: float, tied: float, spread: float) -> float:
    """nan_to_num(tanh(min(ref, tied) / spread - 1), nan=0) with numpy's division by zero."""
    low = min(ref, tied)
    if spread == 0:
        return 0.0 if low == 0 else math.copysign(1.0, low)
    return math.tanh(low / spread - 1)


Group = tuple[Stats | None, Stats | None]  # a prompt id's ref row and tied row


def ties_score(groups: Sequence[Group]) -> float | None:
    """utils.py `process_single_model`'s overall score (None where it is nan: no prompt id
    holds both a ref and a tied row)."""
    refs = [ref for ref, _ in groups if ref is not None]
    tied = [t for _, t in groups if t is not None]
    both = [(ref, t) for ref, t in groups if ref is not None and t is not None]
    if not both:
        return None
    ref_accuracy = sum(s.accurate for s in refs) / len(refs) if refs else 0.0
    tied_accuracy = sum(s.accurate for s in tied) / len(tied) if tied else 0.0
    spreads = [t.different_correct_margin or 0.0 for _, t in both]
    preferred = sum(t.correct_incorrect_margin > d for (_, t), d in zip(both, spreads, strict=True)) / len(both)
    hard = sum(min(r.correct_incorrect_margin, t.correct_incorrect_margin) > d
               for (r, t), d in zip(both, spreads, strict=True)) / len(both)
    margin = sum(_margin_score(r.correct_incorrect_margin, t.correct_incorrect_margin, d)
                 for (r, t), d in zip(both, spreads, strict=True)) / len(both)
    return 0.30 * tied_accuracy + 0.30 * ref_accuracy + 0.20 * preferred + 0.20 * hard + 0.01 * margin


def ties_groups(scored: Sequence[RecordScore]) -> dict[int, Group]:
    """The Ties rows' stats, by prompt id."""
    groups: dict[int, list[Stats | None]] = {}
    for rs in scored:
        record = rs.record
        if record.subset != TIES:
            continue
        slot = groups.setdefault(record.extra["prompt_id"], [None, None])
        slot[record.extra["row"] == "tied"] = prompt_stats(ties_row(row_scores(rs.judgments)), len(record.chosen))
    return {pid: (ref, tied) for pid, (ref, tied) in groups.items()}


def ties_estimate(scored: Sequence[RecordScore], estimates: Mapping[str, Estimate | None], z: float
                  ) -> Estimate | None:
    """The official Ties score, with a percentile interval of a bootstrap over prompt ids
    (seeded by the ids judged, so a rerun reports the same)."""
    groups = ties_groups(scored)
    value = ties_score(list(groups.values()))
    if value is None:
        return None
    ids = sorted(groups)
    draw = random.Random(hashlib.sha256(f"ties:{ids}".encode()).digest())
    values = list(groups.values())
    replicates = sorted(v for _ in range(BOOTSTRAP)
                        if (v := ties_score([values[draw.randrange(len(values))] for _ in values])) is not None)
    level = 2 * NormalDist().cdf(z) - 1
    if len(replicates) < 2:
        return Estimate(value, 0.0, float(len(ids)), *wilson(min(value, 1.0), len(ids), z))
    mean = sum(replicates) / len(replicates)
    variance = sum((v - mean) ** 2 for v in replicates) / (len(replicates) - 1)
    low = replicates[int((1 - level) / 2 * (len(replicates) - 1))]
    high = replicates[math.ceil((1 + level) / 2 * (len(replicates) - 1))]
    p = min(max(value, 0.0), 1.0)
    n_eff = p * (1 - p) / variance if variance > 0 and 0 < p < 1 else float(len(ids))
    return Estimate(value, variance, n_eff, min(low, value), max(high, value))


def overall_estimate(scored: Sequence[RecordScore], estimates: Mapping[str, Estimate | None], z: float
                     ) -> Estimate | None:
    """The unweighted mean of the subsets' scores present; its variance the mean's (the subsets'
    records are independent), its interval Wilson's at that variance's effective size."""
    present = [e for key in SUBSETS.values() if (e := estimates.get(key)) is not None]
    if not present:
        return None
    value = sum(e.value for e in present) / len(present)
    variance = sum(e.variance for e in present) / len(present) ** 2
    p = min(max(value, 0.0), 1.0)
    n_eff = p * (1 - p) / variance if variance > 0 and 0 < p < 1 else float(len(scored))
    low, high = wilson(p, n_eff, z)
    return Estimate(value, variance, n_eff, min(low, value), max(high, value))

