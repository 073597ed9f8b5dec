"""The quality guard: a run whose numbers should not be trusted as they stand says so.

A run is `suspect` when more than --max-unparsed of its comparisons ended without a verdict
(unparsed: a template whose format the judge does not follow; refused: a judge that will not
judge; failed): those count as losses, so the scores would say little about the judge. Each other thing a reader of the
scores must know becomes a sentence in `warnings`: a scenario where nothing could be read or
answered, comparisons to retry, requests the provider rejected, what the backend noticed.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from .config import RunConfig
from .judgments import Judged
from .summary import Summary

UNREADABLE_SHOWN = 3  # raw answers printed when a run is suspect
TRUNCATED_WARNING = 0.01  # more judge answers than this share cut off at --max-tokens: say so
POSITION_BIAS = 0.95  # a judge picking one position this often (or as rarely) says little else
POSITION_MIN = 20  # verdicts needed before the position share means anything


def guard(summary: Summary, judged: list[Judged], config: RunConfig, noticed: list[str]) -> list[str]:
    """Set `suspect` and `warnings` (adding `noticed`, the backend's own); return a few raw
    answers no verdict was read from."""
    warnings = summary.warnings
    usage = summary.usage
    n = len(judged)
    bad = usage.unparsed + usage.refused + usage.failed
    share = bad / n if n else 0.0
    max_unparsed = config.execution.max_unparsed
    samples = config.task.samples
    vote_share = usage.unread_votes / (n * samples) if n and samples > 1 else 0.0
    summary.suspect = max(share, vote_share) > max_unparsed
    if vote_share > max_unparsed:
        warnings.append(
            f"{usage.unread_votes} of the {n * samples} sampled verdicts ({100 * vote_share:.1f}%) could "
            f"not be read, more than --max-unparsed {100 * max_unparsed:g}%: majorities were taken "
            "over fewer votes than --samples asks for."
        )
    if share > max_unparsed:
        warnings.append(
            f"{bad} of {n} comparisons ({100 * share:.1f}%) ended without a verdict: unparsed "
            f"({usage.unparsed}), refused ({usage.refused}) or failed ({usage.failed}), more than "
            f"--max-unparsed {100 * max_unparsed:g}%: they count as losses, so the scores say little "
            "about the judge. Check that the template's verdict format is what the judge answers."
        )
    by_scenario: dict[str, list[Judged]] = defaultdict(list)
    for j in judged:
        by_scenario[j.record.subset].append(j)
    for path, group in sorted(by_scenario.items()):
        errors = Counter(j.error for j in group if j.error)
        if sum(errors.values()) == len(group):
            warnings.append(f"{path}: all {len(group)} comparisons failed ({errors.most_common(1)[0][0]})")
        elif all(j.verdict is None for j in group):
            warnings.append(f"{path}: none of its {len(group)} comparisons got a verdict (unparsed or refused)")
    retryable = usage.failed - usage.rejected
    if retryable:
        warnings.append(f"{retryable} comparisons failed after all retries: the run is incomplete; "
                        "rerun the same command to retry them")
    if usage.rejected:
        warnings.append(f"{usage.rejected} requests were rejected by the provider (e.g. too long "
                        "for the model's context) and count as losses")
    if n and usage.truncated / n > TRUNCATED_WARNING and not config.task.judge.scalar:
        warnings.append(f"{usage.truncated} judge answers were cut off at --max-tokens "
                        f"{summary.settings.max_tokens}; raise it if verdicts are missing")
    position = summary.position
    picks = sum(1 for j in judged if j.verdict in ("A", "B"))
    if position and position.first_pick_rate is not None and picks >= POSITION_MIN and (
        position.first_pick_rate >= POSITION_BIAS or position.first_pick_rate <= 1 - POSITION_BIAS
    ):
        fixed = " With --order fixed the preferred answer is always shown first, so the scores " \
                "mostly measure this bias." if summary.settings.order == "fixed" else ""
        warnings.append(f"the judge picked the answer shown first in {100 * position.first_pick_rate:.0f}% "
                        f"of {picks} verdicts.{fixed}")
    warnings.extend(noticed)
    return [
        j.raw if isinstance(j.raw, str) else repr(j.raw)
        for j in judged if j.verdict is None and not j.error and not j.refused
    ][:UNREADABLE_SHOWN]
