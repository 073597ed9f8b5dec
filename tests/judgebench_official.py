"""JudgeBench's official scoring and decision rules, copied verbatim from its repository
(github.com/ScalerLab/JudgeBench at e2c52c284e735e139b3daa61c206ee208f36c461), for the tests to
check rmb-judge's JudgeBench scores against: an independent oracle, not our code.

- `flip_judgment`, `compute_final_metrics`: utils/metrics.py lines 6-78, as they are (only
  `-> None` corrected to what they return, and the unused counters kept).
- `get_score` and the decision of `ArenaHard.get_judgment`: utils/judges.py lines 46-73.
- `reward_model_decision`: the decision line of its reward model judges (judges.py line 564).
- `category_scores`: run_judge.py lines 94-96 (the categories by source prefix), as fractions.
"""

import re
from typing import Any


def flip_judgment(decision: str) -> str:
    if decision == "A>B":
        decision = "B>A"
    elif decision == "B>A":
        decision = "A>B"
    return decision


def compute_final_metrics(pairs: list[dict[str, Any]], reverse_order: bool, include_fn=lambda x: x) -> float:

    pairs = [pair for pair in pairs if include_fn(pair)]

    n_pairs = len(pairs)

    if not reverse_order:
        n_correct = sum(
            pair["judgments"][0]["decision"] == pair["label"]
            for pair in pairs
        )
        n_incorrect = n_pairs - n_correct  # noqa: F841
        return 100*n_correct/n_pairs

    else:

        n_all_correct = 0
        n_all_incorrect = 0
        n_some_correct = 0

        n_correct = 0
        n_incorrect = 0
        n_tie = 0

        n_nulls = 0
        n_inconsistent = 0

        for pair in pairs:

            label = pair["label"]
            judgment1, judgment2 = pair["judgments"]

            decision1 = judgment1["decision"] if judgment1 is not None else None
            decision2 = flip_judgment(judgment2["decision"] if judgment2 is not None else None)

            if decision1 is None or decision2 is None:
                n_nulls += 1

            # consistency metrics
            if decision1 == label and decision2 == label:
                n_all_correct += 1
            elif decision1 != label and decision2 != label:
                n_all_incorrect += 1
            else:
                n_some_correct += 1

            if decision1 != decision2:
                n_inconsistent += 1

            # new metrics
            counter = 0
            for decision in [decision1, decision2]:
                if decision == label:
                    counter += 1
                elif decision == flip_judgment(label):
                    counter -= 1

            if counter > 0:
                n_correct += 1
            elif counter < 0:
                n_incorrect += 1
            else:
                n_tie += 1

        return 100*n_correct/n_pairs


def get_score(judgment: str, pattern: "re.Pattern[str]", pairwise: bool = True
              ) -> tuple[int | str | None, bool | None]:
    matches = pattern.findall(judgment)
    matches = [m for m in matches if m != ""]
    if len(set(matches)) == 0:
        return None, True
    elif len(set(matches)) == 1:
        if pairwise:
            return matches[0].strip("\n"), False
        return int(matches[0]), None
    else:
        return None, False


ARENA_HARD_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")


def arena_hard_decision(judgment: str) -> tuple[str | None, bool | None]:
    """The decision ArenaHard.get_judgment returns for the judgment text so far, and whether it
    would try again (send the follow-up turn)."""
    score, try_again = get_score(judgment, ARENA_HARD_PATTERN)
    return (score.replace(">>", ">").strip() if score else None), try_again  # type: ignore[union-attr]


def reward_model_decision(score1: float, score2: float) -> str:
    return 'A>B' if score1 > score2 else 'B>A'


CATEGORIES = {"knowledge": "mmlu-pro", "reasoning": "livebench-reasoning", "math": "livebench-math",
              "coding": "livecodebench", "overall": ""}


def category_scores(pairs: list[dict[str, Any]], reverse_order: bool) -> dict[str, float]:
    """run_judge.py's printout, as fractions: each category by its source prefix, and overall."""
    return {name: compute_final_metrics(pairs, reverse_order, include_fn=lambda x, p=prefix: x["source"].startswith(p))
            / 100 for name, prefix in CATEGORIES.items()}
