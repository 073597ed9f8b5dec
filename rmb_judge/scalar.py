"""Scalar reward models (`hf:` judges): every unique answer scored once, rewards cached.

A Best-of-N best answer is shared by all its comparisons, so it is scored (and cached)
once. Scoring runs in chunks in a worker thread: each chunk is written to the cache as
soon as it is scored, the live display keeps running, and Ctrl-C stops between chunks.
"""

from __future__ import annotations

import asyncio
import signal
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import comparisons as cmp
from . import records
from .cache import Cache, CachedReward, cache_file, text_sha256
from .display import Display, RunProgress
from .errors import CacheMiss, RmbJudgeError
from .scoring import Judged

CHUNK = 256  # answers per cache write and per interruption check


def load_model(config):
    from .local_rm import LocalRewardModel

    local = config.local
    return LocalRewardModel(
        config.judge.model,
        max_length=local.max_length,
        batch_tokens=local.batch_tokens,
        devices=local.devices,
        trust_remote_code=local.trust_remote_code,
        reward_field=local.reward_field,
        revision=local.revision,
    )


class ScalarPlan:
    """The unique texts to score and, per comparison, which two of them decide it."""

    def __init__(self, model, dataset: records.Dataset):
        from .local_rm import ScoreItem

        self.comparisons = cmp.comparisons_of(dataset.records)
        self.items: dict[str, Any] = {}  # text sha256 -> ScoreItem
        self.pairs: list[tuple[str, str]] = []  # (preferred digest, other digest)
        rendered: dict[tuple, str] = {}
        for c in self.comparisons:
            conversation = tuple((m.role, m.content) for m in c.record.conversation)
            digests = []
            for answer in (c.preferred, c.other):
                item = ScoreItem(conversation, answer.text)
                if item not in rendered:
                    rendered[item] = text_sha256(model.render(item))
                    self.items.setdefault(rendered[item], item)
                digests.append(rendered[item])
            self.pairs.append((digests[0], digests[1]))


def run_scalar(config):
    return asyncio.run(_run_scalar(config))


async def _run_scalar(config):
    from .outputs import RunFolder
    from .runner import RunResult, build_summary, guard, load_dataset, settings_of, write_run

    settings = settings_of(config, None)
    folder = RunFolder(config.out, config.judge.spec, settings, config.replace)
    try:
        with quiet_libraries() as heard:
            model = load_model(config)  # a missing folder or a non-reward model: before the data
        identity = model.identity()
        settings["model_identity"] = identity
        cache = Cache(config.cache)
        try:
            dataset = await asyncio.to_thread(load_dataset, config)
            plan = ScalarPlan(model, dataset)
            rewards = cache.get_rewards(identity, plan.items)
            cached = set(rewards)
            missing = [d for d in plan.items if d not in rewards]
            if missing and config.engine.offline:
                raise CacheMiss(
                    f"--offline: {len(missing)} of {len(plan.items)} answers have no cached reward "
                    f"for {config.judge.spec} in {cache.path}; nothing was scored"
                )
            if missing:
                cache.writable(f"{len(missing)} new rewards")
            meter = Meter(model, len(missing))
            progress = RunProgress(config.judge.spec, False, metrics=meter.metrics)
            for c in plan.comparisons:
                progress.sections[c.record.section_key].total += 1
            judged: dict[int, Judged] = {}
            waiting: dict[str, list[int]] = defaultdict(list)  # digest -> comparisons that need it
            for index, pair in enumerate(plan.pairs):
                for digest in set(pair):
                    waiting[digest].append(index)

            def judge_ready(digests) -> None:
                for digest in digests:
                    for index in waiting.pop(digest, ()):
                        a, b = plan.pairs[index]
                        if index not in judged and a in rewards and b in rewards:
                            judged[index] = verdict(plan.comparisons[index], rewards[a], rewards[b],
                                                    cached=a in cached and b in cached)
                            progress.add(judged[index])

            judge_ready(list(rewards))
            with quiet_libraries() as more:
                stopped, failure = await _score(config, model, plan, missing, rewards, cache,
                                                identity, meter, progress, judge_ready)
            cache.record_run(config.judge.spec, len(plan.items), len(cached), meter.answers)
        finally:
            cache.close()
        ordered = [judged[i] for i in sorted(judged)]
        summary, record_scores = build_summary(
            config, dataset, settings, ordered, len(plan.comparisons), stopped
        )
        used = [rewards[d] for d in plan.items if d in rewards]
        summary["usage"] = {
            "requests": 0,
            "answers_scored": meter.answers,
            "unique_answers": len(plan.items),
            "cache_hits": sum(1 for j in ordered if j.cached),
            "retries": 0,
            "failed": 0,
            "unparsed": 0,
            "truncated_inputs": sum(1 for r in used if r.truncated),
            "equal_rewards": sum(1 for j in ordered if j.verdict == "tie"),
            "input_tokens": meter.tokens,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "answers_per_second": round(meter.rate(), 2),
            "results": {"answers": len(used), "input_tokens": sum(r.tokens for r in used),
                        "output_tokens": 0, "cost_usd": 0.0},
        }
        guard(summary, ordered, config, None)
        truncated = summary["usage"]["truncated_inputs"]
        if used and truncated / len(used) > TRUNCATION_WARNING:
            summary["warnings"].append(
                f"{truncated} of {len(used)} scored inputs ({100 * truncated / len(used):.1f}%) were "
                f"longer than --max-length {model.max_length} tokens and lost their beginning"
            )
        summary["warnings"].extend(f"{config.judge.spec}: {w}" for w in dict.fromkeys([*heard, *more]))
        write_run(folder, config, dataset, summary, record_scores, ordered)
    finally:
        folder.close()
    if failure:
        message = " ".join(str(failure).split())[:300]
        raise RmbJudgeError(
            f"{config.judge.spec}: scoring stopped ({type(failure).__name__}: {message}); "
            "the rewards scored so far are cached and a partial summary was written"
        ) from failure
    return RunResult(summary, summary["complete"], stopped)


TRUNCATION_WARNING = 0.01  # more than this share of inputs cut: say so


async def _score(config, model, plan, missing, rewards, cache, identity, meter, progress, judge_ready):
    """Score the missing answers chunk by chunk in a worker thread, caching each chunk.
    First Ctrl-C: stop after the chunk being scored. Second: stop now."""
    stopped: str | None = None
    failure: BaseException | None = None
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        nonlocal stopped
        stopped = "interrupted"
        progress.notice = "stopping after the chunk being scored (Ctrl-C again to stop now)"
        loop.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C is a plain KeyboardInterrupt

    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGTERM, interrupt)
    try:
        if missing:  # before the live view, which a loading model must not scribble over
            await asyncio.to_thread(model.load)
        async with Display(progress, live=config.live, interval=config.progress_interval):
            for start in range(0, len(missing), CHUNK):
                if stopped:
                    break
                chunk = missing[start : start + CHUNK]
                try:
                    scored = await asyncio.to_thread(
                        model.score, [plan.items[d] for d in chunk], meter.update
                    )
                except Exception as exc:  # e.g. out of memory: still write what was scored
                    failure, stopped = exc, "error"
                    break
                new = {d: CachedReward(r.value, r.truncated, r.tokens) for d, r in zip(chunk, scored)}
                meter.chunk_done(sum(r.truncated for r in new.values()))
                cache.put_rewards(identity, config.judge.model, new.items())
                rewards.update(new)
                judge_ready(new)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return stopped, failure


@contextmanager
def quiet_libraries() -> Iterator[list[str]]:
    """No third-party progress bars or warnings on the terminal while we draw the live view;
    the warnings are collected (deduplicated) for the summary instead."""
    import transformers

    heard: list[str] = []
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield heard
        heard.extend(" ".join(str(w.message).split())[:200] for w in caught)
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()


def verdict(comparison: cmp.Comparison, preferred: CachedReward, other: CachedReward,
            cached: bool) -> Judged:
    """The preferred answer must get a strictly higher reward; equal rewards are a loss,
    counted apart (as in the RMB reference code)."""
    if preferred.reward > other.reward:
        said = "A"
    elif preferred.reward == other.reward:
        said = "tie"
    else:
        said = "B"
    return Judged(
        presentation=cmp.Presentation(comparison, "AB"),
        verdict=said,
        raw=[preferred.reward, other.reward],
        cached=cached,
        truncated=preferred.truncated or other.truncated,
        scalar=True,
    )


class Meter:
    """Answers, tokens and truncated inputs scored in this run, for the live view. `score`
    reports running totals per call; the meter adds the calls (chunks) up."""

    def __init__(self, model, to_score: int):
        self.model = model
        self.to_score = to_score
        self.answers = self.tokens = self.truncated = 0
        self._chunk = (0, 0)  # the running totals of the chunk being scored
        self.started = time.monotonic()

    def update(self, answers: int, tokens: int) -> None:
        previous = self._chunk
        self._chunk = (answers, tokens)
        self.answers += answers - previous[0]
        self.tokens += tokens - previous[1]

    def chunk_done(self, truncated: int) -> None:
        self._chunk = (0, 0)
        self.truncated += truncated

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.answers / elapsed if elapsed > 0 else 0.0

    def metrics(self) -> dict[str, str]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        shown = {
            "answers scored": f"{self.answers}/{self.to_score}",
            "answers/s": f"{self.answers / elapsed:.1f}",
            "tokens/s": f"{self.tokens / elapsed:,.0f}",
            "inputs truncated": str(self.truncated),
        }
        memory = self.model.gpu_memory()
        if memory:
            shown["GPU memory"] = memory
        return shown


def estimate_scalar(config, dataset: records.Dataset) -> dict[str, Any]:
    model = load_model(config)
    plan = ScalarPlan(model, dataset)
    cached = {}
    if cache_file(config.cache).exists():  # an estimate creates no cache
        cache = Cache(config.cache, create=False)
        try:
            cached = cache.get_rewards(model.identity(), plan.items)
        finally:
            cache.close()
    return {
        "judge": config.judge.spec,
        "simulated": False,
        "template": None,
        "records": len(dataset.records),
        "comparisons": len(plan.comparisons),
        "total_requests": len(plan.items),
        "requests": len(plan.items) - len(cached),
        "cached": len(cached),
        "input_tokens": None,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "full_cost_usd": 0.0,
        "batch": False,
        "token_method": None,
        "output_tokens_per_request": 0,
        "output_tokens_note": "a local reward model: 'requests' are unique answers to score",
        "price_source": "local model (no API cost)",
    }
