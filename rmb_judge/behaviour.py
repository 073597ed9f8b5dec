"""How a judge behaves beyond its accuracy, from what every run already has: its verdicts and
the answers it compared, with their texts and the models that wrote them (`Answer.model`;
RMB's `llm_name`). Written against comparisons and answers, so any benchmark whose answers
name their models gets the same measures.

The unit is a judged presentation (a comparison in one order, its votes decided), and a
record's presentations are one cluster for every interval (a Best-of-N record's comparisons
and the two orders of `--order both` are not independent draws):
- length bias: on presentations whose answers differ in length (characters) and whose verdict
  picks a side, how often the judge picked the longer answer, against how often the labels
  prefer the longer one on those same presentations; their paired difference, with its
  interval and sign-flip p-value, says whether the judge favours length beyond what the labels
  do;
- self-preference: the judge's model family (FAMILIES, from its model's name) against the
  answers' families: how often it picks its own family's answer where exactly one answer is
  of its family (against the labels), and its accuracy where an answer of its family is
  involved against where none is;
- accuracy by responder model: on the presentations where a model wrote one of the answers,
  and split by whether it wrote the preferred or the other one (a judge that favours a
  model is more accurate where that model wrote the preferred answer);
- refusal rate: presentations the judge refused to judge (generative judges).
Accuracy here is a presentation's own (1 a win, 0.5 a tie, 0 otherwise), not a record's
score: these say where a judge goes wrong, the scores say how often.
Position bias (how often the answer shown first is picked; how often two orders agree) is
`scoring.position_bias`'s.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Sequence

from .judgments import Judged, Pair
from .measures import Behaviour, ModelAccuracy, Preference, SelfPreference, paired, share

# A model's family from its name (the part after the last "/"), first match wins: answers of
# one family come from related weights or one vendor's line (Llama-2-7b and Llama-2-70b,
# Mistral-7B and Mixtral-8x7B, gpt-4o and o3).
FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern, re.I)) for name, pattern in (
    ("gpt", r"gpt|davinci|^o\d"),
    ("claude", r"claude"),
    ("gemini", r"gemini|palm|bard"),
    ("gemma", r"gemma"),
    ("vicuna", r"vicuna"),
    ("llama", r"llama"),
    ("mistral", r"mistral|mixtral|ministral|codestral|magistral"),
    ("qwen", r"qwen|qwq"),
    ("deepseek", r"deepseek"),
    ("glm", r"glm"),
    ("yi", r"^yi-"),
    ("phi", r"^phi-"),
    ("command", r"command-|^c4ai|^aya"),
))
MODELS_LISTED = 30  # responder models listed in the summary, most presentations first


@functools.lru_cache(maxsize=1024)
def family(model: str | None) -> str | None:
    """The family of a model name, or None when no FAMILIES pattern knows it (a run asks
    about a few names tens of thousands of times)."""
    if not model:
        return None
    name = model.rsplit("/", 1)[-1]
    return next((f for f, pattern in FAMILIES if pattern.search(name)), None)


def _pair(j: Judged) -> Pair:
    assert isinstance(j.judgment, Pair)
    return j.judgment


def _picked(j: Judged) -> int | None:
    """Which answer the verdict picked: 1 the preferred, 0 the other, None neither (a tie, none)."""
    return {"win": 1, "loss": 0}.get(j.outcome or "")


def measure(judged: Sequence[Judged], judge_model: str | None, scalar: bool) -> Behaviour:
    """Length bias, self-preference, accuracy by responder model and refusal rate of a run's
    judged presentations; `judge_model` names the judge's model (None: no one model)."""
    by_record: dict[Hashable, list[Judged]] = {}
    for j in judged:
        by_record.setdefault(j.record, []).append(j)
    groups = list(by_record.values())
    # length, self-preference and models are measured on pairs (a chosen against a rejected answer)
    pairs = [g for group in groups if (g := [j for j in group if isinstance(j.judgment, Pair)])]
    own = family(judge_model)
    behaviour = Behaviour(
        presentations=len(judged),
        length=_length(pairs),
        self_preference=_self_preference(pairs, own) if own else None,
        models=_models(pairs),
        refusal=None if scalar else share([[float(j.refused) for j in g] for g in groups]),
    )
    if not own:
        behaviour.note = (f"self-preference: the family of {judge_model} is not known" if judge_model
                          else "self-preference: the judge is not one model")
    return behaviour


def _preference(pairs: Sequence[Sequence[tuple[int, int]]]) -> Preference:
    """(judge picked it, label prefers it) per presentation, by record."""
    return Preference(
        judge=share([[float(x) for x, _ in c] for c in pairs]),
        label=share([[float(y) for _, y in c] for c in pairs]),
        difference=paired([[float(x - y) for x, y in c] for c in pairs]),
    )


def _length(groups: Sequence[Sequence[Judged]]) -> Preference | None:
    pairs: list[list[tuple[int, int]]] = []
    for group in groups:
        found: list[tuple[int, int]] = []
        for j in group:
            comparison = _pair(j)
            longer = len(comparison.preferred.text) - len(comparison.other.text)
            picked = _picked(j)
            if longer and picked is not None:
                preferred_longer = int(longer > 0)
                found.append((int(picked == preferred_longer), preferred_longer))
        pairs.append(found)
    return _preference(pairs) if any(pairs) else None


def _self_preference(groups: Sequence[Sequence[Judged]], own: str) -> SelfPreference:
    pairs: list[list[tuple[int, int]]] = []
    involved: list[list[float]] = []
    others: list[list[float]] = []
    for group in groups:
        found: list[tuple[int, int]] = []
        with_own: list[float] = []
        without: list[float] = []
        for j in group:
            comparison = _pair(j)
            preferred_own = family(comparison.preferred.model) == own
            other_own = family(comparison.other.model) == own
            (with_own if preferred_own or other_own else without).append(j.correct)
            picked = _picked(j)
            if preferred_own != other_own and picked is not None:
                found.append((int(picked == int(preferred_own)), int(preferred_own)))
        pairs.append(found)
        involved.append(with_own)
        others.append(without)
    return SelfPreference(family=own, prefers_own=_preference(pairs), accuracy_own=share(involved),
                          accuracy_others=share(others))


def _models(groups: Sequence[Sequence[Judged]]) -> list[ModelAccuracy]:
    """Per responder model: accuracy where it wrote either answer, the preferred one, the other."""
    cells: dict[str, tuple[dict[int, list[float]], dict[int, list[float]], dict[int, list[float]]]] = {}
    for index, group in enumerate(groups):
        for j in group:
            comparison = _pair(j)
            preferred, other = comparison.preferred.model, comparison.other.model
            for model in {preferred, other} - {""}:
                either, as_preferred, as_other = cells.setdefault(model, ({}, {}, {}))
                either.setdefault(index, []).append(j.correct)
                if model == preferred:
                    as_preferred.setdefault(index, []).append(j.correct)
                if model == other:
                    as_other.setdefault(index, []).append(j.correct)
    listed = sorted(cells.items(), key=lambda item: (-sum(map(len, item[1][0].values())), item[0]))
    return [
        ModelAccuracy(model, family(model), share(list(either.values())), share(list(as_preferred.values())),
                      share(list(as_other.values())))
        for model, (either, as_preferred, as_other) in listed[:MODELS_LISTED]
    ]
