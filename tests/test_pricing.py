"""Prices from genai-prices, offline token counts, and the output-length assumptions."""

from __future__ import annotations

import pytest
import tiktoken.load
from conftest import DATA, RMB
from fake_api import Reply
from genai_prices import Usage, calc_price

from rmb_judge import pricing
from rmb_judge.pricing import assumed_output
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


def test_cached_input_is_priced_as_published():
    """o3: $2 per million input tokens, $0.50 per million cached input tokens, $8 per million
    output tokens. 2,048 of 3,000 input tokens read from the prompt cache and 1,500 output:
    $0.014928, not the $0.018 the full input price gives."""
    true = (3000 - 2048) * 2 / 1e6 + 2048 * 0.5 / 1e6 + 1500 * 8 / 1e6
    assert price_usd("openai", "o3", 3000, 1500) == pytest.approx(0.018, rel=1e-12)
    assert registry()["openai"].price("o3", 3000, 1500, cache_read=2048) == pytest.approx(true, rel=1e-12)
    assert round(true, 6) == 0.014928


@pytest.mark.parametrize(("provider", "model", "batch", "discount"), [
    ("openai", "o3", False, None), ("openai", "gpt-4o-mini", True, 0.5),
    ("anthropic", "claude-sonnet-4-5", False, None),  # tiered, with cache read and write rates
    ("anthropic", "claude-3-5-haiku-latest", True, 0.5), ("google", "gemini-2.5-flash", False, None),
    ("google", "gemini-2.5-pro", True, 0.5),
])
def test_cache_reads_and_writes_are_priced_as_genai_prices_prices_them(provider, model, batch, discount):
    """On both sides of every tier threshold: the fast price of a usage with cached input
    equals genai-prices' own (cache_read_tokens and cache_write_tokens are part of
    input_tokens, each billed at its own rate where the model has one)."""
    import random

    fast = pricing.Pricer(provider, model, batch, discount)
    rng = random.Random(11)
    inputs = [rng.randrange(1, 400_000) for _ in range(150)]
    inputs += [t + d for t in fast._thresholds for d in (-1, 0, 1, 5000) if t + d > 0]
    for input_tokens in inputs:
        read = rng.randrange(0, input_tokens + 1)
        write = rng.randrange(0, input_tokens - read + 1) if provider == "anthropic" else 0
        output = rng.randrange(0, 70_000)
        usage = Usage(input_tokens=input_tokens, output_tokens=output, cache_read_tokens=read, cache_write_tokens=write)
        reference = calc_price(usage, model, provider_id=provider, price_context=pricing.BATCH if batch else None)
        exact = float(reference.total_price)
        if batch and not any(v.when == pricing.BATCH for v in reference.model.price_variants or ()):
            exact *= discount
        assert fast(input_tokens, output, read, write) == pytest.approx(exact, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("wire", "flavor", "model"), [
    ("openai", "chat", "o3"), ("anthropic", "default", "claude-sonnet-4-5"), ("google", "default", "gemini-2.5-flash"),
])
def test_usage_is_read_as_genai_prices_reads_it(wire, flavor, model):
    """Each provider's answer (as its API sends it: Anthropic's input_tokens leaves out the
    cached tokens, the others' include them; Gemini bills thinking as output) is read into
    the token counts genai-prices extracts from the same JSON."""
    from fake_api import anthropic_message, google_response, openai_completion
    from genai_prices import extract_usage

    from rmb_judge.providers import anthropic_provider, google_provider, openai_provider

    build, read = {"openai": (openai_completion, openai_provider.to_response),
                   "anthropic": (anthropic_message, anthropic_provider.to_response),
                   "google": (google_response, google_provider.to_response)}[wire]
    reply = Reply("[[A]]", input_tokens=3000, output_tokens=1500, cached_tokens=2048, thinking="Let me see.",
                  cache_write_tokens=300 if wire == "anthropic" else 0)
    answer = build(reply, {"model": model, "messages": []}, "id-1")
    ours = read(answer)
    theirs = extract_usage(answer, provider_id=wire, api_flavor=flavor).usage
    assert (ours.input_tokens, ours.output_tokens, ours.cache_read_tokens, ours.cache_write_tokens) == (
        theirs.input_tokens, theirs.output_tokens, theirs.cache_read_tokens, theirs.cache_write_tokens)
    assert (ours.input_tokens, ours.cache_read_tokens) == (3000, 2048)


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
    import bpe_openai  # here, not at collection: importing it builds three encodings (0.6 s a worker)

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
        for text in (record.conversation[-1].content, record.chosen[0].text, record.rejected[0].text)
    ]
    exact = count_tokens("openai", "gpt-4o", messages).n
    approx = count_tokens("openai", "not-an-openai-model", messages).n
    assert 1.0 < approx / exact < 1.3


def test_output_estimate_is_the_assumption_capped_by_max_tokens():
    assert assumed_output("rmb", "gpt-4o-mini", None).tokens == 250
    assert assumed_output("rmb", "gpt-4o-mini", 100).tokens == 100
    assert assumed_output("json", "claude-haiku-4-5", 1024).tokens == 60
    assert assumed_output("a-new-style", "gpt-4o", None).tokens == pricing.DEFAULT_OUTPUT_TOKENS


@pytest.mark.parametrize(("model", "thinks"), [
    ("o3", True), ("o4-mini", True), ("gpt-5-mini", True), ("gemini-2.5-pro", True), ("gemini-2.5-flash", True),
    ("models/gemini-2.5-flash", True), ("deepseek-ai/DeepSeek-R1", True), ("openai/gpt-oss-120b", True),
    ("gpt-4o-mini", False), ("claude-sonnet-4-5", False), ("gemini-2.5-flash-lite", False),
    ("meta-llama/Llama-3.1-8B-Instruct", False),
])
def test_models_that_reason_by_default_are_assumed_to_bill_their_thinking(model, thinks):
    """Hidden reasoning is billed as output: a model that reasons by default is assumed to
    write the verdict's tokens plus its thinking (capped by --max-tokens), and says so."""
    assumed = assumed_output("rmb", model, 2048)
    assert (assumed.thinking > 0) == thinks
    assert assumed.tokens == min(250 + assumed.thinking, 2048) and assumed.verdict == 250
    assert assumed_output("rmb", model, 300).tokens == min(300, 250 + assumed.thinking)
    if thinks:
        assert f"{assumed.thinking:,} of hidden reasoning" in assumed.describe()
