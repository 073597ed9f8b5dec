"""`rmb-judge estimate`: what a run would cost before it starts.

It builds exactly the requests `run` would build, looks them up in the cache, and counts
tokens and dollars only for the ones a run would send.
"""

from __future__ import annotations

import asyncio
import gc
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from . import benchmarks
from .cache import Cache, cache_file
from .config import RunConfig
from .errors import UsageError
from .generative import GenerativeBackend, GenerativePlan
from .precision import Sampler, allocate, pools, required_n
from .records import Dataset, Record
from .scalar import ScalarBackend
from .session import load_dataset


def estimate(config: RunConfig) -> dict[str, Any]:
    try:
        return _estimate(config)
    finally:
        gc.unfreeze()  # what the bulk steps froze (session.paused_gc) is collectable again


def _estimate(config: RunConfig) -> dict[str, Any]:
    task, execution = config.task, config.execution
    benchmark = benchmarks.get(task.benchmark)
    if task.judge.scalar and task.precision is not None:
        raise UsageError("estimate --precision: a local reward model sends no paid requests; "
                         "estimate it without --precision")
    if task.judge.scalar:
        if task.judge.served:
            from .served_rm import ServedRewardBackend

            backend: ScalarBackend = ServedRewardBackend(config, benchmark)
        else:
            backend = ScalarBackend(config, benchmark)
        asyncio.run(backend.prepare())
        return backend.estimate(load_dataset(config, benchmark))
    generative = GenerativeBackend(config, benchmark)
    dataset = load_dataset(config, benchmark)
    plan = GenerativePlan(config, dataset, generative.template)
    jobs = plan.jobs()
    cached = {}
    if cache_file(execution.cache).exists():  # an estimate creates no cache
        cache = Cache(execution.cache, create=False)
        try:
            cached = cache.get_responses(plan.answers(), generative.endpoints)
        finally:
            cache.close()
    estimator = generative.estimate
    sampled = None
    if task.precision is not None:
        sampled = precision_sample(plan, dataset, task.precision, task.selection.seed, set(cached))
        jobs = [j for j in jobs if (j.key, j.sample) in sampled["answers"]]
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
    result = {
        "judge": task.judge.spec,
        "simulated": task.judge.simulated,
        "template": generative.template.name,
        "records": len(dataset.records),
        "comparisons": len(plan.presentations),
        "total_requests": len(jobs),
        "requests": misses,
        "cached": len(cached),
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
    if sampled is not None:
        result["cached"] = sum(1 for job in jobs if (job.key, job.sample) in cached)
        result["precision"] = {k: v for k, v in sampled.items() if k != "answers"}
    return result


# What `estimate --precision` assumes of the judge: the largest variance a record score in [0, 1]
# can have, so the prediction is an upper bound; a judge near 0 or 1 stops sooner.
ASSUMED_VARIANCE = 0.25


def precision_sample(plan: GenerativePlan, dataset: Dataset, target: float, seed: int,
                     cached: set[tuple[str, int]]) -> dict[str, Any]:
    """The records a `--precision` run would judge if every record's score had variance
    ASSUMED_VARIANCE: the cheapest allocation (Neyman, by requests) reaching ±target, taken in
    each scenario's seeded order, and the answers they need."""
    answers_of: dict[Record, list[tuple[str, int]]] = defaultdict(list)
    for presentation, keys in zip(plan.presentations, plan.keys, strict=True):
        answers_of[presentation.comparison.record].extend(keys)
    drawn = pools(dataset.records, seed, lambda r: float(sum(1 for k in answers_of[r] if k not in cached)))
    sampler = Sampler(drawn, target)
    sizes = allocate(drawn, sampler.weights, {p.key: ASSUMED_VARIANCE for p in drawn}, sampler.first(),
                     ASSUMED_VARIANCE / required_n(0.5, target))
    chosen = [r for p in drawn for r in p.members[: sizes[p.key]]]
    return {
        "target": target,
        "assumed_record_variance": ASSUMED_VARIANCE,
        "assumption": "every record score has variance 0.25, the most a score in [0, 1] can have: "
                      "an upper bound; a judge near 0 or 1 stops sooner",
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
    if result["simulated"]:
        console.print("[yellow]mock is a simulated judge: it costs nothing and means nothing[/]")
