"""A run folder's verdicts read back from its `samples.jsonl`, by comparison: what `compare`
(agreement between judges, their probabilities) and `jury` need of a finished run, without
its cache or a request.

A comparison (a pair) is read from its lines; rankings' and ratings' lines are passed over.
Its verdict relative to the label is its presentations' (each order's) when they agree, a tie
when the two orders disagree, and none when either has none: RMB's rule for two orders
(Benchmark.judgment_score). Its probability that the preferred answer is better is
the mean over its orders (verdict_probs.right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import verdict_probs
from .errors import DataError, UsageError
from .scoring import label_outcome
from .summary import read_samples

Key = tuple[str, str, int | None]  # subset, uid, the judgment's number (RMB's loser_index)


@dataclass(frozen=True)
class Presented:
    order: str  # "AB": the label-preferred answer shown first
    verdict: str | None  # positional: "A", "B", "tie" or None
    probs: verdict_probs.Probs | None = None

    @property
    def outcome(self) -> str | None:
        return label_outcome(self.verdict, self.order)


@dataclass
class JudgedComparison:
    presentations: list[Presented] = field(default_factory=list)
    finished: bool = True  # its record was scored (a stopped run's unfinished records are not)

    @property
    def outcome(self) -> str | None:
        """"win", "loss", "tie" or None, relative to the label, over its orders."""
        return combined([p.outcome for p in self.presentations])

    @property
    def right(self) -> float | None:
        """P(the preferred answer is better), a tie counting half, over its orders (None: no probabilities)."""
        return verdict_probs.right([(p.probs, p.order) for p in self.presentations])

    @property
    def label_probs(self) -> tuple[float, float, float] | None:
        """P(the preferred answer wins), P(the other wins), P(tie), over its orders."""
        found = [verdict_probs.preferred(p.probs, p.order) for p in self.presentations if p.probs is not None]
        if not found or len(found) < len(self.presentations):
            return None
        return verdict_probs.mean(found)


def combined(outcomes: Sequence[str | None]) -> str | None:
    """One comparison's outcome from its presentations': theirs when they agree, a tie when
    they disagree, None when any is missing."""
    if not outcomes or None in outcomes:
        return None
    return outcomes[0] if len(set(outcomes)) == 1 else "tie"


def read(folder: Path) -> dict[Key, JudgedComparison]:
    """Every judged comparison of a run folder, its samples.jsonl read through its types
    (`summary.read_samples`); one clear error when it is missing or not one of rmb-judge's."""
    samples = folder / "samples.jsonl"
    found: dict[Key, JudgedComparison] = {}
    try:
        for number, row in read_samples(folder):
            if row.models is not None:
                continue  # a ranking's or a rating's line: not a pair's
            if row.order not in ("AB", "BA") or row.verdict not in ("A", "B", "tie", None):
                raise DataError(f"{samples}, line {number}: not a sample line of rmb-judge (order {row.order!r}, "
                                f"verdict {row.verdict!r})")
            probs = None if row.probs is None else (row.probs.A, row.probs.B, row.probs.tie)
            comparison = found.setdefault((row.name, row.uid, row.position), JudgedComparison())
            comparison.presentations.append(Presented(row.order, str(row.verdict) if row.verdict else None, probs))
            comparison.finished = comparison.finished and row.record_correct is not None
    except FileNotFoundError:
        raise UsageError(f"{folder}: no samples.jsonl in this folder (the run's verdicts are read from it)") from None
    except OSError as error:
        raise DataError(f"{samples}: cannot read ({error.strerror or error})") from None
    return found
