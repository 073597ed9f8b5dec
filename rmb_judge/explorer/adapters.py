"""How a benchmark's records are shown: the names of their answers and of their subsets.

Everything particular to a benchmark's record shapes that the page shows lives here, so a
benchmark whose records have other shapes (several chosen and rejected answers, one correct
answer among four) adds an adapter instead of touching the index, the server or the page.
"""

from __future__ import annotations

from ..benchmark import Benchmark
from ..records import Record


class RecordAdapter:
    """The shapes `benchmark.Section` knows: pairwise (chosen vs rejected), best-of-N (the best
    answer vs each loser), and several chosen against several rejected answers, numbered."""

    def answer_labels(self, kind: str, others: int) -> list[str]:
        """Labels of a record's answers: the label-preferred one first, then the others."""
        if kind == "pairwise":
            return ["chosen", "rejected"]
        return ["best", *(f"loser {number}" for number in range(1, others + 1))]

    def labels(self, record: Record) -> list[str]:
        if len(record.chosen) > 1:
            return [*(f"chosen {n}" for n in range(1, len(record.chosen) + 1)),
                    *(f"rejected {n}" for n in range(1, len(record.rejected) + 1))]
        return self.answer_labels(record.kind, len(record.rejected))

    def subset(self, benchmark: Benchmark, subset: str) -> str:
        """The subset's name as the page lists it (the section is shown beside it)."""
        return benchmark.scenario_label(subset)


_ADAPTERS: dict[str, RecordAdapter] = {}  # benchmark name -> its adapter, where the default does not fit
DEFAULT = RecordAdapter()


def adapter_for(benchmark: Benchmark) -> RecordAdapter:
    return _ADAPTERS.get(benchmark.name, DEFAULT)
