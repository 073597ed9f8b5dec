"""What a judge is asked about a record, and how it is shown: the judgment kinds every
benchmark's records are judged through. Which judgments a record needs is its benchmark's
decision (`Benchmark.judgments`); the kinds are these three:

- `Pair`: a chosen and a rejected answer of the record, shown in one order or both (`AB`: the
  chosen answer first, as Assistant A). Its verdict is positional: "A", "B", "tie" or None.
- `Ranking`: k of the record's answers in one prompt, in a layout (which answer each slot
  shows); its verdict is the slot picked ("A", "B", ...) or None.
- `Rating`: one answer rated on its own; its verdict is a number or None.

A presentation is a judgment as the judge sees it (a pair in one order, a ranking in one
layout). Relative to the label a presentation's verdict is a "win" (a chosen answer picked),
a "loss", a "tie" or None. A scalar judge (a reward model) answers every kind from the
answers' rewards (`scalar_verdict`).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .records import Answer, Record

ORDERS = ("random", "fixed", "both")
SCORE = "score"  # the record value every benchmark has: its score (samples.jsonl's record_correct)
SLOTS = string.ascii_uppercase  # a ranking's slots, as the judge sees them: A, B, C, ...


@dataclass(frozen=True)
class Pair:
    """Two answers of a record: `record.chosen[chosen]` against `record.rejected[rejected]`.
    `position`: its number among its record's judgments (None when the record has only it),
    which samples.jsonl names it by."""

    record: Record
    chosen: int = 0
    rejected: int = 0
    position: int | None = None

    @property
    def preferred(self) -> Answer:
        return self.record.chosen[self.chosen]

    @property
    def other(self) -> Answer:
        return self.record.rejected[self.rejected]


@dataclass(frozen=True)
class Ranking:
    """k answers of a record in one prompt: `answers` indexes `record.answers` (chosen first)."""

    record: Record
    answers: tuple[int, ...]
    position: int | None = None


@dataclass(frozen=True)
class Rating:
    """One answer of a record (`record.answers[answer]`) rated on its own."""

    record: Record
    answer: int
    position: int | None = None


Judgment = Pair | Ranking | Rating


@dataclass(frozen=True)
class Presentation:
    """A judgment as the judge is shown it. `order`: a pair's "AB" (the chosen answer shown
    first) or "BA"; a ranking's layout, one digit per slot naming the index into its
    `answers` that the slot shows ("102": slot A shows answers[1], ...); a rating's ""."""

    judgment: Judgment
    order: str

    @property
    def record(self) -> Record:
        return self.judgment.record

    @property
    def shown(self) -> tuple[Answer, ...]:
        """The answers in the order the judge sees them."""
        judgment = self.judgment
        if isinstance(judgment, Pair):
            pair = (judgment.preferred, judgment.other)
            return pair if self.order == "AB" else pair[::-1]
        if isinstance(judgment, Ranking):
            every = judgment.record.answers
            return tuple(every[judgment.answers[int(slot)]] for slot in self.order)
        return (judgment.record.answers[judgment.answer],)

    def outcome(self, verdict: str | float | None) -> str | None:
        """A verdict relative to the label: "win" (a chosen answer picked), "loss", "tie" or
        None; a rating's verdict has none (its benchmark reads the number)."""
        judgment = self.judgment
        if verdict is None or verdict == "tie" or isinstance(judgment, Rating):
            return None if isinstance(judgment, Rating) else verdict  # type: ignore[return-value]
        if isinstance(judgment, Pair):
            return "win" if verdict == ("A" if self.order == "AB" else "B") else "loss"
        slot = SLOTS.find(str(verdict))
        if not 0 <= slot < len(self.order):
            return None
        picked = judgment.answers[int(self.order[slot])]
        return "win" if picked < len(judgment.record.chosen) else "loss"


def coin(seed: int, subset: str, uid: str, position: int | None) -> int:
    """A byte seeded by --seed and a judgment's place, the same in every run and subset."""
    return hashlib.sha256(f"{seed}:{subset}:{uid}:{position}".encode()).digest()[0]


def pair_orders(pair: Pair, mode: str, seed: int) -> tuple[str, ...]:
    """`fixed`: the chosen answer first; `both`: both orders; `random`: a coin flip seeded by
    --seed and the pair itself, so reruns and subsets show the same order."""
    if mode == "fixed":
        return ("AB",)
    if mode == "both":
        return ("AB", "BA")
    return ("AB",) if coin(seed, pair.record.subset, pair.record.uid, pair.position) % 2 == 0 else ("BA",)


def shuffled_layout(seed: int, subset: str, uid: str, size: int, position: int | None = None) -> str:
    """A ranking's layout: its answers in an order seeded by --seed and its place, the same in
    every run and subset ("2031": slot A shows its answers[2], ...)."""
    digest = hashlib.sha256(f"layout:{seed}:{subset}:{uid}:{position}".encode()).digest()
    slots = sorted(range(size), key=lambda i: (digest[i % len(digest)], i))
    return "".join(str(i) for i in slots)


def scalar_verdict(presentation: Presentation, rewards: Sequence[float]) -> str | float | None:
    """A reward model's verdict on a presentation from the rewards of the answers it shows
    (in shown order): a pair's higher reward wins ("tie" when equal: a scalar tie, which the
    benchmarks score as they define it); a ranking's slot of the highest reward (None when
    several share it); a rating's reward."""
    judgment = presentation.judgment
    if isinstance(judgment, Rating):
        return rewards[0]
    if isinstance(judgment, Pair):
        first, second = rewards
        return "A" if first > second else "tie" if first == second else "B"
    top = max(rewards)
    slots = [slot for slot, reward in enumerate(rewards) if reward == top]
    return SLOTS[slots[0]] if len(slots) == 1 else None


@dataclass
class Judged:
    """The verdict on one presentation, with what it came from."""

    presentation: Presentation
    verdict: str | float | None  # a pair's "A", "B", "tie" or None; a ranking's slot; a rating's number
    raw: Any = None
    cached: bool = False
    error: str | None = None
    rejected: bool = False  # the error is the provider's final word on this request (too long)
    refused: bool = False
    truncated: bool = False
    votes: tuple[str | float | None, ...] = ()
    scalar: bool = False  # a reward model: equal rewards are a loss, not a tie
    probs: tuple[float, float, float] | None = None  # --verdict-probs: P(A), P(B), P(tie), mean over votes
    outcome: str | None = field(init=False)  # relative to the label: "win", "loss", "tie" or None
    correct: float = field(init=False)  # 1 for a win, 0.5 for a generative tie, else 0

    def __post_init__(self) -> None:
        # computed once: scoring, the live view and the samples all read them
        self.outcome = self.presentation.outcome(self.verdict)
        self.correct = {"win": 1.0, "tie": 0.0 if self.scalar else 0.5}.get(self.outcome, 0.0)  # type: ignore[arg-type]

    @property
    def judgment(self) -> Judgment:
        return self.presentation.judgment

    @property
    def record(self) -> Record:
        return self.presentation.judgment.record

    @property
    def unanswered(self) -> bool:
        """No verdict, for whatever reason (failed, refused, unparsed)."""
        return self.verdict is None


@dataclass
class RecordScore:
    record: Record
    values: dict[str, float]  # the record's value for each value its score keys average; SCORE its score
    judgments: list[list[Judged]]  # each judgment's presentations
    judgment_scores: list[float]

    @property
    def score(self) -> float:
        return self.values[SCORE]
