"""What a judge's requests cost: the per-request numbers the engine budgets and accounts
with, and `estimate` adds up. Each provider counts and prices its own tokens.

A price follows the endpoint, not only the model's name: the provider's published price
(genai-prices) holds on its official API; another server (a local vLLM serving
`gpt-oss-120b`, a gateway) bills what it bills, so its price is unknown unless the user gives
one (`--price IN,OUT`, USD per million input and output tokens, or `--price published` for a
proxy that bills as the official API).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import endpoints as ep
from .pricing import assumed_output
from .providers.base import ChatRequest, Provider

PUBLISHED = "published"  # --price published: the provider's published price, wherever the endpoint
Price = tuple[float, float] | str  # --price: (USD per million input tokens, per million output tokens) or PUBLISHED


class Estimator:
    """Token and cost estimates for one judge's requests (input counted, output assumed),
    from the provider's own counting and the price that applies at its endpoints: what the
    engine budgets and accounts with."""

    def __init__(self, provider: type[Provider], model: str, style: str, max_tokens: int, batch: bool = False,
                 *, endpoints: Sequence[str] = (), price: Price | None = None, verdict_tokens: int | None = None):
        self.provider = provider
        self.model = model
        self.batch = batch
        self.output = assumed_output(style, model, max_tokens, verdict_tokens)
        self.output_tokens = self.output.tokens
        self.method = ""
        official = ep.normalize(provider.official_endpoint)
        self.elsewhere = [e for e in endpoints if e != official]  # endpoints off the official API
        self.price = PUBLISHED if price is None and not self.elsewhere else price

    def tokens(self, request: ChatRequest) -> tuple[int, int]:
        count = self.provider.count_tokens(self.model, request.messages)
        self.method = count.method
        return count.n, self.output_tokens

    def count_output(self, text: str) -> int:
        return self.provider.count_text(self.model, text)

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
             batch: bool | None = None) -> float | None:
        """USD for one usage at the price that applies, or None when it is unknown. A given
        price bills cached input at the input price (it names no other). `batch`: the usage
        came through the batch API (None: as this judge's requests are sent)."""
        if isinstance(self.price, tuple):
            per_input, per_output = self.price
            return (input_tokens * per_input + output_tokens * per_output) / 1_000_000
        if self.price == PUBLISHED:
            return self.provider.price(self.model, input_tokens, output_tokens, self.batch if batch is None else batch,
                                       cache_read, cache_write)
        return None

    def price_source(self) -> str:
        """Which price applies, in words."""
        if isinstance(self.price, tuple):
            per_input, per_output = self.price
            return (f"--price ${per_input:g} per million input tokens (cached ones too), "
                    f"${per_output:g} per million output tokens")
        if self.price == PUBLISHED:
            source = f"genai-prices {'batch' if self.batch else 'standard'} price"
            return source + (f" (--price published, at {', '.join(self.elsewhere)})" if self.elsewhere else "")
        return (f"unknown: {', '.join(self.elsewhere)} is not the {self.provider.name} API "
                f"({ep.normalize(self.provider.official_endpoint)}), so the model's name says nothing of "
                "what it bills; --price IN,OUT gives a price (USD per million input and output tokens)")

    def unpriced(self) -> str | None:
        """Why this judge's price is unknown ("unknown: ...", "unknown to genai-prices; ..."),
        or None when it is known."""
        if self.cost(1, 1) is not None:
            return None
        if self.price is None:
            return self.price_source()
        return "unknown to genai-prices; --price IN,OUT gives one (USD per million input and output tokens)"

    def describe(self) -> str:
        return f"{self.price_source()}; tokens: {self.method or 'n/a'}"
