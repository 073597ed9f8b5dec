"""`--precision H`: judge a seeded, stratified, growing sample until the 95% interval of
`overall` has half-width at most H. Pure decisions, no I/O: the run (session.py), `estimate`
and `bin/bench-precision` all drive this same code.

- The strata are the scenarios. Each has a fixed order, a permutation seeded by `--seed` and
  the records' identities, and the sample is always a prefix of every scenario's order: a
  later run with a smaller H (or no --precision) judges a superset of what an earlier one
  judged, so every answer already paid for is used again.
- The sample is decided by the command and the answers alone, never by what the cache holds:
  a record's cost is the requests it needs (a Best-of-N record: its N-1 comparisons, times two
  orders with `--order both`, times K with `--samples K`), cached or not, and every run starts
  from the same first round. So a rerun judges the same records and reports the same score,
  and a stopped run, rerun, replays its rounds from the cache for free and goes on as if never
  stopped.
- Estimates weight each scenario by its size in the selection and are `scoring.estimates`'
  (the summary's), so a scenario sampled more heavily than another does not pull the score its
  way and the interval the stop checks is the one reported.
- Round by round the sample grows toward the Neyman allocation that reaches H at the least
  cost: a scenario gets records in proportion to weight * sd / sqrt(cost per record), with
  the sd of its section's pooled variance, not its own: a few records say little about one
  scenario, and allocating by them froze the estimates of scenarios whose first records
  happened to agree (pairwise sections, mostly won, leaned high; Best-of-N ones, mostly
  lost, low; bin/bench-precision measures it).
- Guard against an interval that lies because the run stopped when it happened to look
  narrow (sequential stopping): every scenario gets at least MIN_PER_SCENARIO records before
  any stop, and a --precision run's score intervals (the one the stop checks, and those it
  reports) use the critical value STOP_Z = 2.05 instead of 1.96 (docs/BENCHMARKS.md).
- A round in which requests failed (after their retries) decides nothing: the run stops
  growing its sample and does not claim H; a rerun retries them and goes on.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .intervals import Estimate, Stratum, half_width, pooled, stratified, wilson

MIN_PER_SCENARIO = 2  # records of each scenario judged before any stop (a variance needs two)
STOP_Z = 2.05  # the critical value of a --precision run's score intervals, corrected for stopping
GROWTH = 2.0  # a round spends at most this many times what the sample cost so far


def order_key(seed: int, category_path: str, uid: str, index: int) -> bytes:
    """Where a record falls in its scenario's seeded order."""
    return hashlib.sha256(f"precision:{seed}:{category_path}:{uid}:{index}".encode()).digest()


class Sampled(Protocol):
    """What the sampler needs of a record."""

    @property
    def subset(self) -> str: ...
    @property
    def section(self) -> str: ...
    @property
    def uid(self) -> str: ...
    @property
    def index(self) -> int: ...


R = TypeVar("R", bound=Sampled)


def pools(records: Iterable[R], seed: int, cost: Callable[[R], float],
          links: Mapping[R, Hashable] | None = None, unit: Callable[[R], str | None] | None = None) -> list[Pool]:
    """The scenarios of these records, each with its records in the seeded order, what each
    costs (in requests) and its linked set (`scoring.linked`). `unit` (`Benchmark.draw_unit`):
    records of one unit are drawn together, side by side in the order, as one cluster; a record
    whose unit is None is drawn alone."""
    by_path: dict[str, list[R]] = defaultdict(list)
    for record in records:
        by_path[record.subset].append(record)
    made = []
    for path, members in by_path.items():
        units = {r: unit(r) or r.uid for r in members} if unit else {}
        if all(u == r.uid for r, u in units.items()):
            members.sort(key=lambda r: order_key(seed, path, r.uid, r.index))
            made.append(Pool(path, members[0].section, list(members), [cost(r) for r in members],
                             None if links is None else [links[r] for r in members]))
            continue
        first: dict[str, R] = {}
        for r in sorted(members, key=lambda r: r.index):
            first.setdefault(units[r], r)
        members.sort(key=lambda r: (order_key(seed, path, units[r], first[units[r]].index), r.index))
        ends = [0] * len(members)
        for i in range(len(members) - 1, -1, -1):
            last = i + 1 == len(members) or units[members[i + 1]] != units[members[i]]
            ends[i] = i + 1 if last else ends[i + 1]
        made.append(Pool(path, members[0].section, list(members), [cost(r) for r in members],
                         [units[r] if links is None else links[first[units[r]]] for r in members], ends))
    return made


@dataclass
class Pool:
    """One scenario: its records in seeded order (any hashable ids) and what each still costs."""

    key: str  # the subset
    section: str
    members: list = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    links: list[Hashable] | None = None  # each member's linked set (None: none linked)
    ends: list[int] | None = None  # drawn by units: the prefix size that ends each member's unit

    def whole(self, n: int) -> int:
        """The smallest prefix of at least `n` members that splits no unit."""
        return n if self.ends is None or n == 0 else self.ends[min(n, self.size) - 1]

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Step:
    """What the sampler concluded from the sample so far."""

    estimate: Estimate | None  # of overall
    stop: str | None  # "precision" (reached), "exhausted" (all judged), or None (go on)
    sizes: dict[str, int]  # the prefix of each scenario to have judged next (unchanged on a stop)


def required_n(p: float, target: float, z: float = STOP_Z) -> float:
    """The smallest Wilson n whose interval around p has half-width at most `target`."""
    low, high = 1.0, 1.0
    while _wilson_half(p, high, z) > target:
        high *= 2
        if high > 1e12:
            return high
    while high - low > 0.5:
        middle = (low + high) / 2
        low, high = (middle, high) if _wilson_half(p, middle, z) > target else (low, middle)
    return high


def _wilson_half(p: float, n: float, z: float) -> float:
    """How far Wilson's interval reaches from p, on its farther side (what the stop checks)."""
    return half_width(p, wilson(p, n, z))


class Sampler:
    """Decides, from the record scores of each scenario's judged prefix, whether to stop and how
    far each prefix grows next."""

    def __init__(self, pools: Sequence[Pool], target: float, minimum: int = MIN_PER_SCENARIO,
                 z: float = STOP_Z, sampled: float | None = None, across: str = "sections"):
        self.pools = [p for p in pools if p.size]
        self.target = target
        self.minimum = minimum
        self.z = z
        self.sampled = sampled  # --sample's rate: the selection the pools hold is itself random
        sections: dict[str, int] = defaultdict(int)
        for pool in self.pools:
            sections[pool.section] += pool.size
        # overall: the mean of the sections' scores, each the mean over its records (RMB), or
        # (`across` "records") the mean over every record (JudgeBench): benchmark.ScoreKey's
        total = sum(sections.values())
        self.weights = {p.key: p.size / total if across == "records" else p.size / sections[p.section] / len(sections)
                        for p in self.pools}
        self.rounds = 0

    def first(self, judged: Mapping[str, int] | None = None) -> dict[str, int]:
        """The first round: every scenario's minimum (or the prefix it has judged, if longer)."""
        judged = judged or {}
        return {p.key: p.whole(min(p.size, max(self.minimum, judged.get(p.key, 0)))) for p in self.pools}

    def estimate(self, scores: Mapping[str, Sequence[float]]) -> Estimate | None:
        """`overall` from each scenario's judged prefix (stratified by scenario), as the run's
        summary computes it (`scoring.estimates`)."""
        return stratified(self._strata(scores), self.z, self.sampled)

    def _strata(self, scores: Mapping[str, Sequence[float]]) -> list[Stratum]:
        return [Stratum(self.weights[p.key], values, group=p.section, size=p.size,
                        links=None if p.links is None else p.links[: len(values)])
                for p in self.pools for values in [scores.get(p.key, ())]]

    def step(self, scores: Mapping[str, Sequence[float]]) -> Step:
        """Stop, or the next sizes. `scores[key]`: the record scores of the scenario's prefix."""
        self.rounds += 1
        sizes = {p.key: len(scores.get(p.key, ())) for p in self.pools}
        estimate = self.estimate(scores)
        floor_met = all(sizes[p.key] >= min(p.size, self.minimum) for p in self.pools)
        if estimate is not None and floor_met and estimate.half_width <= self.target:
            return Step(estimate, "precision", sizes)
        if all(sizes[p.key] >= p.size for p in self.pools):
            return Step(estimate, "exhausted", sizes)
        if estimate is None or not floor_met:
            return Step(estimate, None, self.first(sizes))
        return Step(estimate, None, self._grow(scores, sizes, estimate))

    def _grow(self, scores: Mapping[str, Sequence[float]], sizes: dict[str, int], estimate: Estimate) -> dict[str, int]:
        """The cheapest allocation whose interval would reach the target, if the (shrunk)
        variances hold, taken at most GROWTH times the cost so far in one round."""
        variances = self.variances(scores)
        current = sum(self.weights[k] ** 2 * variances[k] / max(n, 1) for k, n in sizes.items())
        # Wilson's n for the target, against the n the current interval has
        shrink = estimate.n_eff / required_n(estimate.value, self.target, self.z)
        wanted = allocate(self.pools, self.weights, variances, sizes, current * shrink)
        spent = sum(sum(p.costs[: sizes[p.key]]) for p in self.pools)
        extra = {p.key: sum(p.costs[sizes[p.key] : wanted[p.key]]) for p in self.pools}
        allowed = GROWTH * max(spent, 1.0)
        scale = min(1.0, allowed / sum(extra.values())) if sum(extra.values()) else 1.0
        grown = {
            p.key: min(p.size, sizes[p.key] + math.ceil((wanted[p.key] - sizes[p.key]) * scale))
            for p in self.pools
        }
        if grown == sizes:  # rounding left nothing to do, yet the target is not met: the most wanted one more
            key = max(self.pools, key=lambda p: (p.size > sizes[p.key]) * self.weights[p.key] ** 2
                      * variances[p.key] / max(sizes[p.key], 1) ** 2).key
            grown[key] += 1
        return {p.key: p.whole(grown[p.key]) for p in self.pools}

    def variances(self, scores: Mapping[str, Sequence[float]]) -> dict[str, float]:
        """Each scenario's record variance for the allocation: its section's pooled variance as
        the interval computes it (`intervals.pooled`), not the scenario's own. A few records
        estimate a scenario's own variance so poorly that allocating by it favoured scenarios
        whose first records happened to agree and froze their estimates there: pairwise
        sections (mostly won) leaned high and Best-of-N ones (mostly lost) low."""
        found = pooled(self._strata(scores), self.z)
        return {p.key: max(found.get(p.section, 0.25), 1e-9) for p in self.pools}


def allocate(pools: Sequence[Pool], weights: Mapping[str, float], variances: Mapping[str, float],
             least: Mapping[str, int], target_variance: float) -> dict[str, int]:
    """Sizes n_h with least_h <= n_h <= N_h minimizing the requests of the records added, such
    that sum of w_h^2 v_h / n_h <= target_variance (Neyman's allocation with costs, by
    water-filling over the bounds); every scenario in full when even that does not reach it."""
    cost = {}
    for p in pools:
        rest = p.costs[least.get(p.key, 0):]
        cost[p.key] = max(sum(rest) / len(rest), 1e-9) if rest else 1.0
    fixed: dict[str, float] = {}
    while True:
        free = [p for p in pools if p.key not in fixed]
        budget = target_variance - sum(weights[k] ** 2 * variances[k] / n for k, n in fixed.items())
        if not free:
            break
        if budget <= 0:
            fixed.update({p.key: float(p.size) for p in free})
            break
        spread = sum(math.sqrt(weights[p.key] ** 2 * variances[p.key] * cost[p.key]) for p in free)
        ideal = {p.key: math.sqrt(weights[p.key] ** 2 * variances[p.key] / cost[p.key]) * spread / budget for p in free}
        over = {p.key: float(p.size) for p in free if ideal[p.key] >= p.size}
        if over:
            fixed.update(over)
            continue
        under = {p.key: float(max(least.get(p.key, 0), 1)) for p in free if ideal[p.key] < max(least.get(p.key, 0), 1)}
        if under:
            fixed.update(under)
            continue
        fixed.update(ideal)
        break
    return {p.key: min(p.size, max(least.get(p.key, 0), math.ceil(fixed[p.key] - 1e-9))) for p in pools}
