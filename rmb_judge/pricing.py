"""Offline token counts and USD prices, the building blocks each provider prices itself with.

Prices come from `genai-prices` (a snapshot bundled with the library, no network); a model
it does not know has no price, never a guessed one. Token counts are exact where a
provider's tokenizer is available offline (OpenAI models, through tiktoken) and a labelled
approximation otherwise. genai-prices and tiktoken are imported on first use.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from .records import user_cache_dir

if TYPE_CHECKING:
    import tiktoken

BATCH = {"processing": "batch"}  # genai-prices' price context for batch APIs

# Chat framing (OpenAI cookbook, "How to count tokens with tiktoken", gpt-3.5-turbo-0613 and
# later): each message costs its role and content plus 3 tokens, and the reply is primed
# with 3 more. The approximation uses the same framing with 1 token for the role.
MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3

# tiktoken downloads its BPE files on first use; bpe-openai ships these two inside its
# wheel, byte for byte the files tiktoken pins by sha256.
BUNDLED_ENCODINGS = ("o200k_base", "cl100k_base")
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

# UTF-8 bytes per token when no exact tokenizer is at hand. Over all of RMB, o200k_base
# gives 4.64 bytes per token (cl100k_base 4.52), per scenario file from 3.5 (code) to 5.4
# (prose); bytes track tokens across scripts far better than characters do. So 4 overestimates
# a whole run by about 15%: a safe budget. (A provider may set its own ratio.)
DEFAULT_BYTES_PER_TOKEN = 4.0

# ESTIMATE, not measured: typical judge output per request for each verdict style, before
# the --max-tokens cap. "rmb": a short explanation then [[A]]/[[B]] (MT-Bench pair-v2);
# "arena-hard": a longer critique then the five-way verdict; "json": a one or two sentence
# reason in a JSON object; "pointwise": a short explanation then a 1-10 rating (per answer).
OUTPUT_TOKENS = {"rmb": 250, "arena-hard": 400, "json": 60, "pointwise": 200}
DEFAULT_OUTPUT_TOKENS = 300

# ESTIMATE, not measured: hidden reasoning tokens a request of a model that reasons by
# default bills as output, on top of OUTPUT_TOKENS (and within --max-tokens, which counts
# them too). The first pattern that matches the model's name (its last path part, lower
# case) applies; other models are assumed not to reason (Claude thinks only when asked, and
# rmb-judge never asks). `estimate` prints the assumption it made.
THINKING_TOKENS: tuple[tuple[str, int, str], ...] = (
    (r"^(o\d|gpt-5)", 1500, "an OpenAI reasoning model, at its default effort"),
    (r"^gemini-2\.5-flash-lite", 0, "thinks only when asked"),
    (r"^gemini-2\.5-flash", 1000, "dynamic thinking, on by default"),
    (r"^gemini-(2\.5-pro|3)", 1500, "dynamic thinking, always on"),
    (r"gpt-oss|deepseek-r1|deepseek-reasoner|qwq|-thinking", 1500, "an open reasoning model: its reasoning is output"),
)


@dataclass(frozen=True)
class TokenCount:
    n: int
    method: str  # "tiktoken:<encoding>" (exact) or "approx:utf8-bytes/<ratio>"

    @property
    def exact(self) -> bool:
        return self.method.startswith("tiktoken:")


def _calculation(prices_id: str, model: str, input_tokens: int, output_tokens: int, batch: bool,
                 cache_read: int = 0, cache_write: int = 0) -> Any:
    """genai-prices' PriceCalculation for one usage, or None when it does not know the model."""
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read,
                  cache_write_tokens=cache_write)
    try:
        return calc_price(usage, model, provider_id=prices_id, price_context=BATCH if batch else None)
    except LookupError:
        return None


def price_usd(
    prices_id: str, model: str, input_tokens: int, output_tokens: int, *,
    batch: bool = False, batch_discount: float | None = None, cache_read: int = 0, cache_write: int = 0,
) -> float | None:
    """USD for one usage, or None when genai-prices does not know the provider or model.
    `cache_read` and `cache_write` are those of the input tokens the provider read from or
    wrote to its prompt cache, billed at the model's cache rates where it has them. A batch
    price genai-prices lacks is the standard price times the provider's published
    `batch_discount` (None: unknown)."""
    calc = _calculation(prices_id, model, input_tokens, output_tokens, batch, cache_read, cache_write)
    if calc is None:
        return None
    total = float(calc.total_price)
    if batch and not any(variant.when == BATCH for variant in calc.model.price_variants or ()):
        if batch_discount is None:
            return None
        total *= batch_discount
    return total


class Pricer:
    """`price_usd` of one model, cheap enough to price every answer: a genai-prices call
    takes about 0.3 ms, while a price is linear in the token counts (input, output, cache
    reads and writes) between the input-token thresholds of tiered prices (every rate
    changes together above a threshold). Each stretch's rates are read from genai-prices
    once, then reused; the result equals `price_usd` up to float rounding
    (tests/test_pricing.py)."""

    def __init__(self, prices_id: str, model: str, batch: bool, batch_discount: float | None):
        self._exact = functools.partial(price_usd, prices_id, model, batch=batch, batch_discount=batch_discount)
        calc = _calculation(prices_id, model, 1, 1, batch)
        starts: set[int] = set()
        if calc is not None:
            from genai_prices.types import TieredPrices

            for price in vars(calc.model_price).values():
                if isinstance(price, TieredPrices):
                    starts.update(int(tier.start) for tier in price.tiers)
        self._thresholds = sorted(starts)  # a tier applies when input tokens exceed its start
        self._lines: dict[int, tuple[float, float, float, float, float] | None] = {}

    def __call__(self, input_tokens: int, output_tokens: int, cache_read: int = 0,
                 cache_write: int = 0) -> float | None:
        stretch = bisect.bisect_left(self._thresholds, input_tokens)  # thresholds below the input
        if stretch not in self._lines:
            self._lines[stretch] = self._line(stretch)
        line = self._lines[stretch]
        if line is None:
            return None
        base, per_input, per_output, per_read, per_write = line
        return (base + per_input * input_tokens + per_output * output_tokens
                + per_read * cache_read + per_write * cache_write)

    def _line(self, stretch: int) -> tuple[float, float, float, float, float] | None:
        """(intercept, USD per input token, per output token, and what a cache read and a
        cache write add to an input token's price) within one stretch."""
        low = self._thresholds[stretch - 1] + 1 if stretch else 0
        high = self._thresholds[stretch] if stretch < len(self._thresholds) else low + 1_000_000
        a, b, c = self._exact(low, 0), self._exact(high, 0), self._exact(low, 1_000_000)
        read = self._exact(high, 0, cache_read=high)  # (cached tokens are part of the input)
        write = self._exact(high, 0, cache_write=high)
        if a is None or b is None or c is None or read is None or write is None:
            return None
        per_input = (b - a) / (high - low) if high > low else 0.0
        per_read, per_write = ((read - b) / high, (write - b) / high) if high else (0.0, 0.0)
        return a - per_input * low, per_input, (c - a) / 1_000_000, per_read, per_write


@functools.cache
def pricer(prices_id: str, model: str, batch: bool = False, batch_discount: float | None = None) -> Pricer:
    return Pricer(prices_id, model, batch, batch_discount)


def approx_tokens(messages: Sequence[tuple[str, str]], bytes_per_token: float) -> TokenCount:
    """Input tokens of (role, content) messages from their UTF-8 size, with chat framing."""
    n = sum(
        MESSAGE_OVERHEAD + 1 + math.ceil(len(content.encode("utf-8")) / bytes_per_token)
        for _, content in messages
    )
    return TokenCount(n + REPLY_OVERHEAD, f"approx:utf8-bytes/{bytes_per_token:g}")


def approx_text(text: str, bytes_per_token: float) -> int:
    return math.ceil(len(text.encode("utf-8")) / bytes_per_token)


def tiktoken_tokens(model: str, messages: Sequence[tuple[str, str]]) -> TokenCount | None:
    """Exact input tokens of an OpenAI model's chat request, or None when tiktoken has no
    offline encoding for `model` (a model behind an OpenAI-compatible server)."""
    name = _openai_encoding_name(model)
    if name is None:
        return None
    encoding = _encoding(name)
    n = sum(
        MESSAGE_OVERHEAD
        + len(encoding.encode(role, disallowed_special=()))
        + len(encoding.encode(content, disallowed_special=()))
        for role, content in messages
    )
    return TokenCount(n + REPLY_OVERHEAD, f"tiktoken:{name}")


def tiktoken_text(model: str, text: str) -> int | None:
    name = _openai_encoding_name(model)
    return None if name is None else len(_encoding(name).encode(text, disallowed_special=()))


@dataclass(frozen=True)
class OutputAssumption:
    """What `estimate` assumes a request's output to be: the verdict (OUTPUT_TOKENS, by verdict
    style) and the model's hidden reasoning (THINKING_TOKENS, by model), within --max-tokens."""

    verdict: int
    thinking: int
    max_tokens: int | None
    why: str = ""  # what the thinking assumption is for

    @property
    def tokens(self) -> int:
        total = self.verdict + self.thinking
        return total if self.max_tokens is None else min(total, self.max_tokens)

    def describe(self) -> str:
        said = f"{self.verdict:,} per request for the verdict"
        if self.thinking:
            said += f" + {self.thinking:,} of hidden reasoning, billed as output ({self.why})"
        if self.max_tokens is not None and self.tokens < self.verdict + self.thinking:
            said += f", capped by --max-tokens {self.max_tokens:,}"
        return said + "; an assumption, not a count"


def assumed_output(template_style: str, model: str, max_tokens: int | None,
                   verdict_tokens: int | None = None) -> OutputAssumption:
    """Assumed judge output tokens per request of `model` (see OUTPUT_TOKENS, THINKING_TOKENS);
    `verdict_tokens`: what the template says its verdict takes, instead of its style's."""
    name = model.rsplit("/", 1)[-1].lower()
    thinking, why = next(((tokens, why) for pattern, tokens, why in THINKING_TOKENS if re.search(pattern, name)),
                         (0, ""))
    verdict = verdict_tokens or OUTPUT_TOKENS.get(template_style, DEFAULT_OUTPUT_TOKENS)
    return OutputAssumption(verdict, thinking, max_tokens, why)


def _openai_encoding_name(model: str) -> str | None:
    from tiktoken.model import encoding_name_for_model

    try:
        name = encoding_name_for_model(model)
    except KeyError:  # not an OpenAI model name, e.g. a model behind an OpenAI-compatible server
        return None
    return name if name in BUNDLED_ENCODINGS else None


@functools.cache
def _encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's own encoding, its BPE file taken from bpe-openai instead of the network.

    The file is placed where tiktoken caches downloads (TIKTOKEN_CACHE_DIR, set only while
    loading), under the name it would give the download; tiktoken then checks it against
    its pinned sha256, so the tokenizer is exactly OpenAI's.
    """
    import tiktoken

    cache = user_cache_dir() / "tiktoken"
    seeded = cache / hashlib.sha1(ENCODING_URL.format(name=name).encode()).hexdigest()
    if not seeded.exists():
        bundled = resources.files("bpe_openai") / "data" / f"{name}.tiktoken.gz"
        cache.mkdir(parents=True, exist_ok=True)
        partial = seeded.with_name(f"{seeded.name}.{os.getpid()}.tmp")
        partial.write_bytes(gzip.decompress(bundled.read_bytes()))
        partial.replace(seeded)
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        return tiktoken.get_encoding(name)
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
