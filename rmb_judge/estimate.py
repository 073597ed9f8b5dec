"""`rmb-judge estimate`: what a run would cost before it starts.

It builds exactly the requests `run` would build, looks them up in the cache, and counts
tokens and dollars only for the ones a run would send.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from . import benchmarks
from .benchmark import OVERALL, Benchmark
from .cache import Cache, cache_file
from .config import RunConfig
from .errors import UsageError
from .generative import GenerativeJudge, GenerativePlan
from .precision import Sampler, allocate, pools, required_n
from .records import Dataset, Record
from .scoring import linked
from .session import load_dataset


def estimate(config: RunConfig) -> dict[str, Any]:
    """What a run of this configuration would send and cost (the judge kind reckons it)."""
    try:
        task = config.task
        if task.judge.scalar and task.precision is not None:
            raise UsageError("estimate --precision: a local reward model sends no paid requests; "
                             "estimate it without --precision")
        benchmark = benchmarks.get(task.benchmark)
        benchmark.check_selection(task.selection)
        return task.judge.kind.estimate(config, benchmark)
    finally:
        gc.unfreeze()  # what the bulk steps froze (session.paused_gc) is collectable again


def generative(config: RunConfig, benchmark: Benchmark) -> dict[str, Any]:
    """A generative judge's estimate: the requests a run would build, looked up in the cache,
    tokens and dollars counted for those it would send. A template's follow-up turns are
    counted where the cache knows they are needed (their first reply is cached), and as "up
    to N more" (`follow_ups`) for the first replies still to come."""
    task, execution = config.task, config.execution
    judge = GenerativeJudge(config, benchmark)
    dataset = load_dataset(config, benchmark)
    plan = GenerativePlan(config, benchmark, dataset, judge.template)
    jobs = plan.jobs()
    cached: dict = {}
    if cache_file(execution.cache).exists():  # an estimate creates no cache
        cache = Cache(execution.cache, create=False)
        try:
            cached = cache.get_responses(plan.answers(), judge.endpoints)
            follow = [job for key, response in cached.items() if (job := plan.follow_up(key, response))]
            cached |= cache.get_responses([(j.key, j.sample) for j in follow], judge.endpoints)
            jobs += follow
        finally:
            cache.close()
    estimator = judge.estimate
    sampled = None
    if task.precision is not None:
        sampled = precision_sample(plan, benchmark, dataset, task.precision, task.selection.seed, set(cached))
        wanted = sampled["answers"] | {plan.follow_ups[a] for a in sampled["answers"] if a in plan.follow_ups}
        jobs = [j for j in jobs if (j.key, j.sample) in wanted]
    counts: dict[str, int] = {}
    input_tokens = cached_input = 0
    for job in jobs:
        if job.key not in counts:
            counts[job.key] = estimator.tokens(job.request)[0]
        if (job.key, job.sample) in cached:
            cached_input += counts[job.key]
        else:
            input_tokens += counts[job.key]
    misses = sum(1 for job in jobs if (job.key, job.sample) not in cached)
    output_tokens = misses * estimator.output_tokens
    cost = estimator.cost(input_tokens, output_tokens)
    full_cost = estimator.cost(input_tokens + cached_input, len(jobs) * estimator.output_tokens)
    unknown = sum(1 for j in jobs if not plan.is_follow_up(j.key) and (j.key, j.sample) not in cached)
    result = {
        "judge": task.judge.spec,
        "simulated": task.judge.simulated,
        "template": judge.template.name,
        "records": len(dataset.records),
        "comparisons": len(plan.presentations),
        "total_requests": len(jobs),
        "requests": misses,
        "cached": sum(1 for job in jobs if (job.key, job.sample) in cached),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": cost,
        "full_cost_usd": full_cost,
        "batch": execution.batch,
        "token_method": estimator.method or None,
        "output_tokens_per_request": estimator.output_tokens,
        "output_tokens_note": estimator.output.describe(),
        "price_source": estimator.price_source(),
    }
    if any(t.follow_up for t in plan.templates):
        result["follow_ups"] = unknown  # at most one more request each, not counted above
        result["follow_ups_note"] = (f"up to {unknown:,} more requests: the template asks again, once, when a reply "
                                     "states no verdict label, which is known only once the reply is")
    if sampled is not None:
        result["precision"] = {k: v for k, v in sampled.items() if k != "answers"}
    return result


# What `estimate --precision` assumes of the judge: every comparison won with the same
# probability p, for the p of these that needs the most requests.
ASSUMED_ACCURACIES = tuple(0.5 + 0.05 * k for k in range(10))


def precision_sample(plan: GenerativePlan, benchmark: Benchmark, dataset: Dataset, target: float, seed: int,
                     cached: set[tuple[str, int]]) -> dict[str, Any]:
    """The records a `--precision` run would judge if its judge won every comparison with the
    same probability p, a comparison's verdict shared by every record holding it (one cached
    answer serves them): the cheapest allocation (Neyman, by requests) whose interval reaches
    ±target, taken in each scenario's seeded order, for the p that needs the most requests, and
    the answers those records need. Shared comparisons correlate records of different
    sections; that covariance does not shrink as the sample grows (it is the full data's), so
    the allocation must reach the target variance less it."""
    answers_of: dict[Record, list[tuple[str, int]]] = defaultdict(list)
    for presentation, keys in zip(plan.presentations, plan.first_keys, strict=True):
        answers_of[presentation.record].extend(keys)  # type: ignore[arg-type]
    drawn = pools(dataset.records, seed, lambda r: float(len(answers_of[r])), linked(dataset.records),
                  benchmark.draw_unit)
    sampler = Sampler(drawn, target, across=next(k.across for k in benchmark.score_keys() if k.key == OVERALL))
    holding: dict[tuple, list[Record]] = defaultdict(list)
    compared: dict[Record, set[tuple]] = {}
    for record in dataset.records:
        compared[record] = {(record.conversation, record.chosen[0].text, other.text) for other in record.rejected}
        for key in compared[record]:
            holding[key].append(record)
    pairs = {(a, b) for group in holding.values() for i, a in enumerate(group) for b in group[i + 1:]}
    share = {r: sampler.weights[p.key] / p.size for p in drawn for r in p.members}
    worst: tuple[int, float, list[Record]] | None = None
    for accuracy in ASSUMED_ACCURACIES:
        scored = {r: accuracy ** len(c) for r, c in compared.items()}
        variances = {p.key: sum(scored[r] * (1 - scored[r]) for r in p.members) / p.size for p in drawn}
        value = sum(sampler.weights[p.key] * sum(scored[r] for r in p.members) / p.size for p in drawn)
        covariance = sum(2 * share[a] * share[b] * (accuracy ** len(compared[a] | compared[b]) - scored[a] * scored[b])
                         for a, b in pairs)
        wanted = value * (1 - value) / required_n(value, target) - covariance
        sizes = (allocate(drawn, sampler.weights, variances, sampler.first(), wanted) if wanted > 0
                 else {p.key: p.size for p in drawn})
        chosen = [r for p in drawn for r in p.members[: sizes[p.key]]]
        requests = len({k for r in chosen for k in answers_of[r]} - cached)
        if worst is None or requests > worst[0]:
            worst = requests, accuracy, chosen
    assert worst is not None
    _, accuracy, chosen = worst
    return {
        "target": target,
        "assumed_accuracy": round(accuracy, 2),
        "assumption": f"every comparison won with the same probability ({accuracy:.2f}, of 0.50 to 0.95 the one "
                      "needing the most requests), one verdict per comparison shared by the records holding it; "
                      "a judge whose accuracy varies across scenarios, or lies near 0 or 1, needs fewer",
        "records": len(chosen),
        "population": len(dataset.records),
        "answers": {k for r in chosen for k in answers_of[r]},
    }


def render(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"estimate for {result['judge']}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    cost = result["cost_usd"]
    rows = [
        ("records / comparisons", f"{result['records']:,} / {result['comparisons']:,}"),
        *([("--precision sample", f"±{result['precision']['target']:g}: {result['precision']['records']:,} of "
            f"{result['precision']['population']:,} records")] if result.get("precision") else []),
        ("requests a run would send", f"{result['requests']:,}"),
        ("already in the cache", f"{result['cached']:,} of {result['total_requests']:,}"),
        ("input tokens", "-" if result["input_tokens"] is None
         else f"{result['input_tokens']:,} ({result['token_method']})"),
        ("output tokens (assumed)",
         f"{result['output_tokens']:,} ({result['output_tokens_per_request']:,} per request)"),
        ("cost", "unknown" if cost is None else f"${cost:,.4f}"),
    ]
    if result.get("full_cost_usd") is not None:
        rows.append(("cost without the cache", f"${result['full_cost_usd']:,.4f}"))
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
    console.print(f"output tokens: {result['output_tokens_note']}")
    console.print(f"price: {result['price_source']}")
    if result.get("precision"):
        console.print(f"--precision: the sample assumes {result['precision']['assumption']}")
    if result.get("follow_ups"):
        console.print(f"follow-up turns: {result['follow_ups_note']}")
    if result["simulated"]:
        console.print("[yellow]mock is a simulated judge: it costs nothing and means nothing[/]")
