"""Offline token counts and USD prices, the building blocks each provider prices itself with.

Prices come from `genai-prices` (a snapshot bundled with the library, no network); a model
it does not know has no price, never a guessed one. Token counts are exact where a
provider's tokenizer is available offline (OpenAI models, through tiktoken) and a labelled
approximation otherwise. genai-prices and tiktoken are imported on first use.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

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
# Reasoning models bill hidden reasoning tokens as output on top of this.
OUTPUT_TOKENS = {"rmb": 250, "arena-hard": 400, "json": 60, "pointwise": 200}
DEFAULT_OUTPUT_TOKENS = 300


@dataclass(frozen=True)
class TokenCount:
    n: int
    method: str  # "tiktoken:<encoding>" (exact) or "approx:utf8-bytes/<ratio>"

    @property
    def exact(self) -> bool:
        return self.method.startswith("tiktoken:")


def price_usd(
    prices_id: str, model: str, input_tokens: int, output_tokens: int, *,
    batch: bool = False, batch_discount: float | None = None,
) -> float | None:
    """USD for one usage, or None when genai-prices does not know the provider or model.
    A batch price genai-prices lacks is the standard price times the provider's published
    `batch_discount` (None: unknown)."""
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    try:
        calc = calc_price(usage, model, provider_id=prices_id, price_context=BATCH if batch else None)
    except LookupError:
        return None
    total = float(calc.total_price)
    if batch and not any(variant.when == BATCH for variant in calc.model.price_variants or ()):
        if batch_discount is None:
            return None
        total *= batch_discount
    return total


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


def estimate_output_tokens(template_style: str, max_tokens: int | None) -> int:
    """Assumed judge output tokens per request (see OUTPUT_TOKENS), capped by --max-tokens."""
    assumed = OUTPUT_TOKENS.get(template_style, DEFAULT_OUTPUT_TOKENS)
    return assumed if max_tokens is None else min(assumed, max_tokens)


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
