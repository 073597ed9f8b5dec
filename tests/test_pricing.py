"""Prices from genai-prices, offline token counts, and the output-length assumptions."""

from __future__ import annotations

import bpe_openai
import pytest
import tiktoken.load
from conftest import DATA, RMB
from genai_prices import Usage, calc_price

from rmb_judge import pricing
from rmb_judge.pricing import estimate_output_tokens
from rmb_judge.providers import registry


def price_usd(provider, model, input_tokens, output_tokens, batch=False):
    return registry()[provider].price(model, input_tokens, output_tokens, batch=batch)


def count_tokens(provider, model, messages):
    return registry()[provider].count_tokens(model, messages)
TEXTS = [
    "Hello, world!",
    "你好，世界。今天天气怎么样？",
    "def f(x):\n    return x**2  # 🚀\n\n\n",
    "a literal <|endoftext|> in user text is just text",
    "    indented\tlines\r\n" * 5,
]


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Each test seeds tiktoken's files into an empty cache, and any download attempt fails."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pricing._encoding.cache_clear()

    def no_download(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    yield
    pricing._encoding.cache_clear()


@pytest.mark.parametrize(
    ("provider", "model", "per_million_in", "per_million_out"),
    [("openai", "gpt-4o-mini", 0.15, 0.60), ("anthropic", "claude-3-5-haiku-20241022", 0.80, 4.00)],
)
def test_price_matches_genai_prices(provider, model, per_million_in, per_million_out):
    price = price_usd(provider, model, 2_000_000, 500_000)
    reference = calc_price(
        Usage(input_tokens=2_000_000, output_tokens=500_000), model, provider_id=provider
    )
    assert price == pytest.approx(float(reference.total_price))
    assert price == pytest.approx(2 * per_million_in + 0.5 * per_million_out)


@pytest.mark.parametrize(("provider", "model", "batch", "discount"), [
    ("openai", "gpt-4o-mini", False, None), ("openai", "gpt-4o-mini", True, 0.5),
    ("anthropic", "claude-sonnet-4-5", False, None),  # tiered: rates change above 200k input tokens
    ("anthropic", "claude-3-5-haiku-latest", True, 0.5),  # batch price from the published discount
    ("openai", "meta-llama/Llama-3.1-8B-Instruct", False, None),  # unknown: no price at all
])
def test_the_fast_price_equals_genai_prices(provider, model, batch, discount):
    """Every answer is priced through `Pricer`; it must equal a genai-prices call, on both
    sides of every tier threshold."""
    import random

    fast = pricing.Pricer(provider, model, batch, discount)
    rng = random.Random(7)
    usages = [(rng.randrange(0, 400_000), rng.randrange(0, 70_000)) for _ in range(200)]
    for threshold in fast._thresholds:
        usages += [(threshold - 1, 10), (threshold, 10), (threshold + 1, 10), (threshold + 5000, 0)]
    for input_tokens, output_tokens in usages:
        exact = pricing.price_usd(provider, model, input_tokens, output_tokens, batch=batch, batch_discount=discount)
        got = fast(input_tokens, output_tokens)
        assert (got is None) == (exact is None) and (exact is None or got == pytest.approx(exact, rel=1e-12, abs=1e-15))
    if model == "claude-sonnet-4-5":
        assert fast._thresholds  # (the tiered case is really exercised)


def test_unknown_provider_or_model_has_no_price():
    assert price_usd("openai", "meta-llama/Llama-3.1-8B-Instruct", 1000, 100) is None
    assert price_usd("anthropic", "gpt-4o", 1000, 100) is None
    assert pricing.price_usd("hf", "some/reward-model", 1000, 100) is None
    assert pricing.price_usd("hf", "some/reward-model", 1000, 100, batch=True, batch_discount=0.5) is None
    assert price_usd("mock", "mock", 1000, 100) == 0.0


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),  # batch price modelled by genai-prices
        ("anthropic", "claude-haiku-4-5"),  # likewise
        ("anthropic", "claude-3-5-haiku-latest"),  # not modelled: the published 50% applies
    ],
)
def test_batch_costs_half(provider, model):
    standard = price_usd(provider, model, 1_000_000, 200_000)
    assert standard is not None and standard > 0
    assert price_usd(provider, model, 1_000_000, 200_000, batch=True) == pytest.approx(standard / 2)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [("gpt-4o-mini", "o200k_base"), ("gpt-4.1", "o200k_base"), ("gpt-4", "cl100k_base")],
)
def test_openai_counts_are_exact_offline(model, encoding):
    reference = bpe_openai.get_encoding(encoding)  # an independent (Rust) implementation
    messages = [("system", "You are a judge."), *(("user", text) for text in TEXTS)]
    count = count_tokens("openai", model, messages)
    expected = 3 + sum(
        3 + len(reference.encode(role)) + len(reference.encode(text, disallowed_special=()))
        for role, text in messages
    )
    assert (count.n, count.method, count.exact) == (expected, f"tiktoken:{encoding}", True)


def test_known_o200k_answer():
    # "Hello, world!" is [13225, 11, 2375, 0] in o200k_base; 3 + 1 ("user") + 4 + 3 priming
    assert count_tokens("openai", "gpt-4o", [("user", "Hello, world!")]).n == 11


def test_other_models_get_the_labelled_approximation():
    messages = [("user", "abcdefgh"), ("assistant", "你好")]  # 8 bytes, 6 bytes
    claude = count_tokens("anthropic", "claude-3-5-haiku-latest", messages)
    assert (claude.n, claude.exact) == (3 + (4 + 3) + (4 + 2), False)
    assert claude.method == "approx:utf8-bytes/3.5"
    served = count_tokens("openai", "meta-llama/Llama-3.1-8B-Instruct", messages)
    assert (served.n, served.method) == (3 + (4 + 2) + (4 + 2), "approx:utf8-bytes/4")


def test_approximation_overestimates_o200k_modestly_on_rmb_text():
    # per scenario bytes/token runs from 3.5 (code) to 5.4 (prose); over a mix, 4 is a safe budget
    files = ["Chat/Discussion", "Code/Documentation", "Open QA/Factual", "Rewrite/Paraphrasing"]
    messages = [
        ("user", text)
        for name in files
        for record in list(RMB.read_file(DATA, DATA / f"Pairwise_set/Helpfulness/{name}.json"))[:40]
        for text in (record.conversation[-1].content, record.preferred.text, record.others[0].text)
    ]
    exact = count_tokens("openai", "gpt-4o", messages).n
    approx = count_tokens("openai", "not-an-openai-model", messages).n
    assert 1.0 < approx / exact < 1.3


def test_output_estimate_is_the_assumption_capped_by_max_tokens():
    assert estimate_output_tokens("rmb", None) == 250
    assert estimate_output_tokens("rmb", 100) == 100
    assert estimate_output_tokens("json", 1024) == 60
    assert estimate_output_tokens("a-new-style", None) == pricing.DEFAULT_OUTPUT_TOKENS
