"""What a run would cost before it starts, and the per-request numbers the engine budgets with.

`rmb-judge estimate` builds exactly the requests `run` would build, looks them up in the
cache, and counts tokens and dollars only for the ones a run would send.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from . import pricing
from .cache import Cache, cache_file
from .providers.base import ChatRequest, Provider


class Estimator:
    """Token and cost estimates for one judge's requests (input counted, output assumed),
    from the provider's own counting and prices."""

    def __init__(self, provider: type[Provider], model: str, style: str, max_tokens: int, batch: bool = False):
        self.provider = provider
        self.model = model
        self.batch = batch
        self.output_tokens = pricing.estimate_output_tokens(style, max_tokens)
        self.method = ""

    def tokens(self, request: ChatRequest) -> tuple[int, int]:
        count = self.provider.count_tokens(self.model, request.messages)
        self.method = count.method
        return count.n, self.output_tokens

    def count_output(self, text: str) -> int:
        return self.provider.count_text(self.model, text)

    def cost(self, input_tokens: int, output_tokens: int) -> float | None:
        return self.provider.price(self.model, input_tokens, output_tokens, batch=self.batch)

    def describe(self) -> str:
        mode = "batch price" if self.batch else "standard price"
        return f"genai-prices {mode}; tokens: {self.method or 'n/a'}"


def estimate(config) -> dict[str, Any]:
    import gc

    try:
        return _estimate(config)
    finally:
        gc.unfreeze()  # what the bulk steps froze (runner.paused_gc) is collectable again


def _estimate(config) -> dict[str, Any]:
    from . import templates
    from .judges import make_provider
    from .runner import GenerativePlan, endpoints_of, load_dataset

    dataset = load_dataset(config)
    judge = config.judge
    if judge.scalar:
        from .scalar import estimate_scalar

        return estimate_scalar(config, dataset)
    template = templates.load(config.template)
    plan = GenerativePlan(config, dataset, template)
    jobs = plan.jobs()
    endpoints = endpoints_of(config, make_provider(judge, config.base_urls).endpoints)
    cached = {}
    if cache_file(config.cache).exists():  # an estimate creates no cache
        cache = Cache(config.cache, create=False)
        try:
            cached = cache.get_responses(((j.key, j.sample) for j in jobs), endpoints)
        finally:
            cache.close()
    estimator = Estimator(judge.provider_class, judge.model, template.style, config.max_tokens, config.batch)
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
        "judge": judge.spec,
        "simulated": judge.simulated,
        "template": template.name,
        "records": len(dataset.records),
        "comparisons": len(plan.presentations),
        "total_requests": len(jobs),
        "requests": misses,
        "cached": len(cached),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": cost,
        "full_cost_usd": full_cost,
        "batch": config.batch,
        "token_method": estimator.method or None,
        "output_tokens_per_request": estimator.output_tokens,
        "output_tokens_note": "assumed per request by verdict style (an estimate, not a count)",
        "price_source": "genai-prices" + (" (batch discount)" if config.batch else ""),
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
