"""`rmb-judge estimate`: what a run would cost before it starts.

It builds exactly the requests `run` would build, looks them up in the cache, and counts
tokens and dollars only for the ones a run would send.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from rich.console import Console
from rich.table import Table

from . import benchmarks
from .cache import Cache, cache_file
from .config import RunConfig
from .generative import GenerativeBackend, GenerativePlan
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
    counts: dict[str, int] = {}
    input_tokens = cached_input = 0
    for job in jobs:
        if job.key not in counts:
            counts[job.key] = estimator.tokens(job.request)[0]
        if (job.key, job.sample) in cached:
            cached_input += counts[job.key]
        else:
            input_tokens += counts[job.key]
    misses = len(jobs) - len(cached)
    output_tokens = misses * estimator.output_tokens
    cost = estimator.cost(input_tokens, output_tokens)
    full_cost = estimator.cost(input_tokens + cached_input, len(jobs) * estimator.output_tokens)
    return {
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
        "output_tokens_note": "assumed per request by verdict style (an estimate, not a count)",
        "price_source": "genai-prices" + (" (batch discount)" if execution.batch else ""),
    }


def render(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"estimate for {result['judge']}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    cost = result["cost_usd"]
    rows = [
        ("records / comparisons", f"{result['records']:,} / {result['comparisons']:,}"),
        ("requests a run would send", f"{result['requests']:,}"),
        ("already in the cache", f"{result['cached']:,} of {result['total_requests']:,}"),
        ("input tokens", "-" if result["input_tokens"] is None
         else f"{result['input_tokens']:,} ({result['token_method']})"),
        ("output tokens (assumed)", f"{result['output_tokens']:,} ({result['output_tokens_per_request']} per request)"),
        ("cost", "unknown (no price for this model in genai-prices)" if cost is None else f"${cost:,.4f}"),
    ]
    if result.get("full_cost_usd") is not None:
        rows.append(("cost without the cache", f"${result['full_cost_usd']:,.4f}"))
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
    if result["simulated"]:
        console.print("[yellow]mock is a simulated judge: it costs nothing and means nothing[/]")
