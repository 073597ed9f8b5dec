"""The leaderboard as one JSON object, for scripts: the runs in rank order with their group,
numbers as numbers (scores, intervals, chance levels, counts, cost), then the notes, the
paired comparisons and, when asked for, the published rows."""

from __future__ import annotations

import json
from typing import Any

from .load import Run
from .view import board


def render_json(runs: list[Run], published: bool = False) -> str:
    shown = board(runs, published)
    listed = []
    for group in shown.groups:
        for row in group.rows:
            listed.append({"rank": row.rank, "group": group.kind, "group_title": group.title, "status": row.status_text,
                           **_run(row.run)})
    data: dict[str, Any] = {"benchmark": shown.benchmark.name, "runs": listed, "notes": shown.notes,
                            "paired": shown.paired}
    if published and (table := shown.benchmark.published()) is not None:
        data["published"] = {"title": table.title, "source": table.source, "rows": list(table.rows)}
    return json.dumps(data, indent=2, ensure_ascii=False)


def _run(run: Run) -> dict[str, Any]:
    return {
        "path": str(run.path), "judge": run.judge, "label": run.label, "simulated": run.simulated,
        "complete": run.complete, "stopped_reason": run.stopped_reason, "suspect": run.suspect,
        "warnings": list(run.warnings), "selection": run.selection_text, "records": run.records, "n": run.n,
        "scores": run.scores, "intervals": run.intervals, "chance": run.chance,
        "failed": run.failed, "unparsed": run.unparsed, "refused": run.refused, "cost_usd": run.cost_usd,
        "first_pick_rate": run.first_pick_rate, "consistency": run.consistency, "unanimous": run.unanimous,
    }
