"""What a judge's requests cost: the per-request numbers the engine budgets and accounts
with, and `estimate` adds up. Each provider counts and prices its own tokens."""

from __future__ import annotations

from .pricing import estimate_output_tokens
from .providers.base import ChatRequest, Provider


class Estimator:
    """Token and cost estimates for one judge's requests (input counted, output assumed),
    from the provider's own counting and prices: what the engine budgets and accounts with."""

    def __init__(self, provider: type[Provider], model: str, style: str, max_tokens: int, batch: bool = False):
        self.provider = provider
        self.model = model
        self.batch = batch
        self.output_tokens = estimate_output_tokens(style, max_tokens)
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
