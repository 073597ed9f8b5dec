"""`vllm-rm:MODEL` judges: a scalar reward model served by vLLM (one server, or replicas on
many machines), every unique answer scored once through its pooling API, as `hf:` scores it.

Rendering is done here, not by the server: each answer goes through the model's own
tokenizer and chat template exactly as `hf:` renders it (`local_rm.render_chat`), is
tokenized without added special tokens, cut from the left to the length limit, and sent as
token ids to `POST /pooling` with `use_activation: false` (the raw logit: vLLM puts a
sigmoid on one-label heads unless told not to). Sending `messages` instead would leave the
rendering to the server's template and transformers version, after vLLM rewrites the
messages; with token ids the scored input is `hf:`'s by construction, an over-long input is
cut like `hf:` cuts it instead of failing its request with a 400, and the cache key is the
rendered text, as for `hf:`. tests/test_served_rm.py checks that vLLM's server-side rendering
of the same messages gives the same reward.

Each answer is one request through the engine (concurrency, retries, rate limits, claims,
Ctrl-C); vLLM batches concurrent requests itself. Several --base-url are replicas, used in
turn (`RoundRobin`); one that stops answering is passed over and its requests retried on
the others.

Rewards are cached in the rewards table under the served model's identity: the name it is
served under, what the server reports as its source (`root`: the `vllm serve` argument,
a hub id or a path) and context length (`max_model_len`), and the tokenizer and length
limit used here, each with the replica that computed it. Two servers serving different
weights under one name (different roots) never share rewards; replicas whose reports differ
are refused. The same path holding other weights on another machine, or one server serving
it otherwise (another pooling, a sigmoid), is caught by the preflight probe: before scoring,
every replica scores the same fixed inputs (PROBES), and replicas whose rewards disagree with
each other or with the servers whose rewards the cache holds are refused.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from . import retry
from .benchmark import Benchmark
from .cache import Answer, Cache, CachedReward, Claims, cache_file, text_sha256
from .config import RunConfig
from .engine import Engine, Job, Outcome, Stats
from .errors import CacheMiss, FatalProviderError, RmbJudgeError, UsageError
from .judgments import Judged
from .pipeline import AnswerCallback, Plan, Status
from .providers.base import ChatRequest, ChatResponse, Provider, RoundRobin, json_at, post_json
from .providers.openai_provider import OpenAIProvider
from .records import Dataset
from .scalar import Meter, Rewards, quiet_libraries
from .summary import Usage

IDENTITY_PREFIX = "vllm-rm "
SIGMOID_SUSPECT = 50  # this many unprobed cached rewards, all between 0 and 1: probabilities, not logits?
PREPARE_TIMEOUT = 30.0  # seconds for a server to list its models, or to answer the probe (or --timeout)
# Rewards of one input from two servers agree when they differ by at most this share of the
# probe rewards' scale (their largest magnitude, at least 1). Batch composition moves a bf16
# model's logits by a small fraction of that scale, and other GPUs or parallel layouts by a
# little more; a sigmoid squeezes every reward into (0, 1), and another checkpoint or pooling
# moves rewards by the whole scale.
REWARD_TOLERANCE = 0.05
# What every replica scores at preflight (the same inputs for all), each a conversation
# ending with the answer: answers a reward model ranks apart, so a sigmoid shows.
PROBES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "What is 1+1?"), ("assistant", "1+1=2")),
    (("user", "What is 1+1?"), ("assistant", "1+1=3, and I am sure of it.")),
    (("user", "Name a primary colour."), ("assistant", "Blue.")),
    (("user", "Name a primary colour."), ("assistant", "I cannot help with that request.")),
)


@dataclass(frozen=True)
class ServedModel:
    """What a server reports for the judge's model (GET /v1/models)."""

    name: str
    root: str
    max_model_len: int | None


def server_root(url: str) -> str:
    """vLLM's routes hang off the server's root (`/pooling`, `/v1/models`): an OpenAI-style
    base URL ending in /v1 means the same server."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1")


def rewards_of(answer: Any, inputs: int) -> list[float]:
    """The rewards of a pooling response to `inputs` inputs, in input order: exactly one entry
    per input, each `index` once. Anything else (an entry too many, an index out of place) is
    a broken answer: its entries may be other inputs' rewards, so none is taken."""
    entries = json_at(answer, "data")
    if not isinstance(entries, list) or not entries:
        raise retry.BrokenAnswer("the response body is not a pooling response")
    indexes = [json_at(entry, "index") for entry in entries]
    if any(type(i) is not int for i in indexes) or sorted(indexes) != list(range(inputs)):
        raise retry.BrokenAnswer(f"the pooling response to {inputs} input(s) holds {len(entries)} entries "
                                 f"with index {', '.join(map(repr, indexes))}")
    by_index = dict(zip(indexes, entries, strict=True))
    return [_reward(by_index[i]) for i in range(inputs)]


def reward_of(answer: Any) -> float:
    """The one reward of a pooling response for one input."""
    return rewards_of(answer, 1)[0]


def _reward(entry: Any) -> float:
    """An entry's reward. A seq-cls reward model gives `[x]`; per-token scores (vLLM
    0.12-0.19's default task, InternLM2 reward models) give a `[x]` per token, of which the
    last token's is the reward."""
    value = json_at(entry, "data")
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        value = value[-1]
    if not isinstance(value, list) or not value:
        raise retry.BrokenAnswer("the response body is not a pooling response")
    if len(value) != 1:
        raise RmbJudgeError(
            f"the server returns {len(value)} numbers per input, not one reward: serve the model as a "
            "one-label classifier (vllm serve MODEL --runner pooling --convert classify)"
        )
    reward = value[0]
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise retry.BrokenAnswer(f"the reward is not a finite number: {str(reward)[:40]}")
    return float(reward)


class ServedTokenizer:
    """The client's half of a served reward model: the tokenizer and template it is rendered
    with, and the length inputs are cut to (from the left, as `hf:` does)."""

    def __init__(self, judge: str, tokenizer: Any, max_length: int):
        self.judge = judge
        self.tokenizer = tokenizer
        self.max_length = max_length

    def render(self, item: Any) -> str:
        from .local_rm import render_chat

        return render_chat(self.tokenizer, item, self.judge)

    def tokens(self, request: ChatRequest) -> tuple[list[int], bool]:
        """The token ids scored for a request (its messages end with the answer), and whether
        they were cut."""
        from .local_rm import ScoreItem

        item = ScoreItem(request.messages[:-1], request.messages[-1][1])
        ids = self.tokenizer(self.render(item), add_special_tokens=False, verbose=False)["input_ids"]
        return ids[-self.max_length :], len(ids) > self.max_length

    def gpu_memory(self) -> str | None:
        return None  # the GPUs are the server's


class VllmServer(Provider):
    """One vLLM server, through an openai SDK client (its auth header, error classes, aiohttp
    transport and connection limits) at the server's root."""

    name = "vllm-rm"
    key_variables = ("VLLM_API_KEY",)  # vllm serve --api-key (it guards only /v1 paths)
    api_path = ""  # (vLLM's pooling routes hang off the server's root)

    def __init__(self, model: str, base_url: str, tokens: Callable[[ChatRequest], tuple[list[int], bool]]):
        root, key = server_root(base_url), os.environ.get("VLLM_API_KEY") or "EMPTY"
        self._http = OpenAIProvider(model, base_url=root, api_key=key)  # its client, and how its errors sort
        super().__init__(model, base_url=root, api_key=key)
        self._tokens = tokens

    @property
    def connections(self) -> int:
        return self._http.connections

    @connections.setter
    def connections(self, value: int) -> None:
        self._http.connections = value

    def client(self) -> Any:
        return self._http.client()

    def prepare(self) -> None:
        super().prepare()
        self.client()

    def classify(self, exc: BaseException) -> retry.ErrorKind:
        return self._http.classify(exc)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def served(self, timeout: float) -> ServedModel | list[str]:
        """What the server reports for this model; the names it serves when not this one."""
        import httpx2

        answer = await self.client().get("/v1/models", cast_to=httpx2.Response, options={"timeout": timeout})
        try:
            cards = json.loads(answer.content).get("data") or []
        except (ValueError, AttributeError):
            raise retry.BrokenAnswer("GET /v1/models did not answer a model list") from None
        for card in cards:
            if isinstance(card, dict) and card.get("id") == self.model:
                length = card.get("max_model_len")
                return ServedModel(self.model, str(card.get("root") or self.model),
                                   length if isinstance(length, int) else None)
        return [str(card.get("id")) for card in cards if isinstance(card, dict)]

    async def pool(self, inputs: list[list[int]], timeout: float, activation: bool = False) -> list[float]:
        """The rewards of several inputs in one request: raw logits, or (`activation`) what the
        server makes of them when asked to apply its activation (a sigmoid on one-label heads)."""
        body = {"model": self.model, "input": inputs, "use_activation": activation, "add_special_tokens": False}
        return rewards_of(await post_json(self.client(), "/pooling", body, timeout), len(inputs))

    async def complete(self, request: ChatRequest, timeout: float) -> ChatResponse:
        ids, truncated = self._tokens(request)
        body = {"model": self.model, "input": ids, "use_activation": False, "add_special_tokens": False}
        reward = reward_of(await post_json(self.client(), "/pooling", body, timeout))
        return ChatResponse(repr(reward), input_tokens=len(ids), model=self.model, finish_reason="stop",
                            endpoint=self.endpoints[0], extra={"reward": reward, "truncated": truncated})


class RewardStore:
    """Where the engine keeps a served model's answers (engine.Store): each reward goes to the
    rewards table under the model's identity (as `hf:` rewards do), in group commits, releasing
    its claim; a claimed answer whose reward another process sharing the cache stored since it
    was looked up is served from there (claims end when rewards are stored, in the same
    transaction, so nothing is scored twice). A reward the cache could not take is simply
    scored again by the next run."""

    def __init__(self, cache: Cache, identity: str, model: str, endpoints: tuple[str, ...]):
        self.cache = cache
        self.identity = identity
        self.model = model
        self.endpoints = endpoints

    def claim(self, wanted: list[tuple[str, int]]) -> Claims:
        claims = self.cache.claim(wanted, self.endpoints)
        stored = self.cache.get_rewards(self.identity, [key for key, _ in claims.mine])
        for key in stored:
            self.cache.release(key, 0)
        answered = {(key, 0): ChatResponse(repr(r.reward), input_tokens=r.tokens, model=self.model,
                                           endpoint=r.endpoint or "",
                                           extra={"reward": r.reward, "truncated": r.truncated})
                    for key, r in stored.items()}
        return Claims({**claims.answered, **answered}, [k for k in claims.mine if k[0] not in stored], claims.held)

    def put(self, answers: list[Answer]) -> None:
        rows = [(a.key, cached_reward(a.response)) for a in answers]
        self.cache.put_rewards(self.identity, self.model, rows, release=True)

    def keep_aside(self, answer: Answer) -> dict[str, Any] | None:
        return None


def cached_reward(response: ChatResponse) -> CachedReward:
    return CachedReward(response.extra["reward"], response.extra["truncated"], response.input_tokens,
                        response.endpoint or None)


class ServedRewardJudge:
    """A served reward model's pipeline (pipeline.Pipeline): the plan, cache lookup, verdicts
    and usage are every reward model's (`scalar.Rewards`); the scoring goes through the
    engine, one request per answer, to the servers."""

    progress_rows = "answers"

    def __init__(self, config: RunConfig, benchmark: Benchmark):
        self.config = config
        self.rewards = Rewards(config, benchmark)
        self.settings = self.rewards.settings
        self.stats = Stats()
        self.failures: list[str] = []
        self.heard: list[str] = []  # third-party warnings, for the summary
        self.engine: Engine | None = None
        self.provider: Provider | None = None
        self.model: ServedTokenizer | None = None
        self._stopping: str | None = None

    async def prepare(self) -> None:
        """Ask every server what it serves under the judge's name (they must agree), then load
        the tokenizer; with --offline, take the identity rewards were cached under instead."""
        task, execution = self.config.task, self.config.execution
        if execution.engine.offline:
            identity = self._cached_identity()
            facts = json.loads(identity.removeprefix(IDENTITY_PREFIX))
        else:
            if not execution.base_urls:
                raise UsageError(f"--judge {task.judge.spec}: give the vLLM server(s) with --base-url URL")
            served = await self._ask_servers()
            local = task.local
            limit = local.max_length or served.max_model_len
            if limit is None:
                raise UsageError(f"{task.judge.spec}: the server states no max_model_len; give --max-length")
            if served.max_model_len and limit > served.max_model_len:
                raise UsageError(f"--max-length {limit}: the server takes at most {served.max_model_len} tokens")
            facts = {"model": task.judge.model, "root": served.root, "max_model_len": served.max_model_len,
                     "tokenizer": local.tokenizer or served.root, "revision": local.revision, "max_length": limit}
            identity = IDENTITY_PREFIX + json.dumps(facts, sort_keys=True)
        with quiet_libraries(self.heard):
            tokenizer = await asyncio.to_thread(self._tokenizer, facts["tokenizer"], facts["revision"])
        self.model = ServedTokenizer(task.judge.spec, tokenizer, facts["max_length"])
        self.rewards.identity = self.settings.model_identity = identity
        self.settings.endpoints = list(self._servers().endpoints) if execution.base_urls else []
        self.rewards.meter = Meter(self.model)  # type: ignore[arg-type]

    def _servers(self) -> Provider:
        if self.provider is None:
            urls = self.config.execution.base_urls
            servers = [VllmServer(self.config.task.judge.model, url, self._tokens) for url in urls]
            for server in servers:
                server.connections = self.config.execution.engine.concurrency
            self.provider = servers[0] if len(servers) == 1 else RoundRobin(servers)  # type: ignore[arg-type]
        return self.provider

    def _tokens(self, request: ChatRequest) -> tuple[list[int], bool]:
        assert self.model is not None
        return self.model.tokens(request)

    def _replicas(self) -> list[VllmServer]:
        provider = self._servers()
        return getattr(provider, "providers", [provider])

    def _prepare_limit(self) -> float:
        return min(PREPARE_TIMEOUT, self.config.execution.engine.timeout)

    async def _ask_each(self, ask: Callable[[VllmServer, float], Awaitable[Any]], failed: str) -> list[Any]:
        """`ask` every replica at once, each answer whole within the prepare limit (a server
        trickling bytes never trips a read timeout); the first that fails is one line,
        `failed` with the replica in its `{where}`."""
        limit = self._prepare_limit()
        servers = self._replicas()
        answers = await asyncio.gather(*(asyncio.wait_for(ask(s, limit), limit) for s in servers),
                                       return_exceptions=True)
        for server, answer in zip(servers, answers, strict=True):
            if isinstance(answer, BaseException):
                if isinstance(answer, TimeoutError):
                    reason = f"no whole answer within {limit:g} s"
                else:
                    reason = retry.connect_failure(answer) or retry.describe(answer)
                hint = " (vllm serve --api-key: set VLLM_API_KEY)" if retry.status_of(answer) == 401 else ""
                where = failed.format(where=server.endpoints[0])
                raise FatalProviderError(f"{self.config.task.judge.spec}: {where}: {reason}{hint}")
        return answers

    async def _ask_servers(self) -> ServedModel:
        provider = self._servers()
        provider.prepare()
        spec = self.config.task.judge.spec
        try:
            answers = await self._ask_each(lambda server, limit: server.served(limit),
                                           "cannot ask {where} what it serves")
        finally:
            await provider.aclose()  # (the scoring opens its own: `estimate` ends its event loop here)
        found: dict[str, ServedModel] = {}
        for server, answer in zip(self._replicas(), answers, strict=True):
            where = server.endpoints[0]
            if isinstance(answer, list):
                raise FatalProviderError(f"{spec}: {where} serves {', '.join(answer) or 'no model'}, not "
                                 f"{self.config.task.judge.model} (vllm serve --served-model-name)")
            found[where] = answer
        if len(set(found.values())) > 1:
            told = "; ".join(f"{url}: {m.root}, max_model_len {m.max_model_len}" for url, m in found.items())
            raise UsageError(f"{spec}: the --base-url servers serve different models under one name ({told})")
        return next(iter(found.values()))

    def _tokenizer(self, source: str, revision: str | None) -> Any:
        from transformers import AutoTokenizer

        local = self.config.task.local
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision,
                                                      trust_remote_code=local.trust_remote_code)
        except (OSError, ValueError, KeyError, ImportError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RmbJudgeError(f"{self.config.task.judge.spec}: cannot load the tokenizer {source!r} "
                                f"(give --tokenizer PATH_OR_ID): {reason}") from None
        if not tokenizer.chat_template:
            raise RmbJudgeError(f"{self.config.task.judge.spec}: the tokenizer {source!r} has no chat template")
        return tokenizer

    def _cached_identity(self) -> str:
        """--offline: the served model whose rewards the cache holds for this judge."""
        spec, path = self.config.task.judge.spec, self.config.execution.cache
        keys: list[str] = []
        if cache_file(path).exists():
            cache = Cache(path, create=False)
            try:
                keys = [k for k in cache.reward_models(self.config.task.judge.model)
                        if k.startswith(IDENTITY_PREFIX)]
            finally:
                cache.close()
        if not keys:
            raise CacheMiss(f"--offline: the cache {path} holds no rewards of {spec}; nothing was scored")
        local = self.config.task.local
        given = {name: value for name, value in (("max_length", local.max_length), ("tokenizer", local.tokenizer),
                                                  ("revision", local.revision)) if value is not None}
        facts = {key: json.loads(key.removeprefix(IDENTITY_PREFIX)) for key in keys}
        matching = [key for key in keys if all(facts[key].get(name) == value for name, value in given.items())]
        if not matching:
            flags = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in given.items())
            raise CacheMiss(f"--offline: the cache {path} holds rewards of {spec} only for "
                            f"{'; '.join(_described(facts[k]) for k in keys)}, not for {flags}; nothing was scored")
        if len(matching) > 1:
            raise UsageError(f"--offline: the cache holds rewards of {spec} from {len(matching)} served models "
                             f"({'; '.join(_described(facts[k]) for k in matching)}); give --max-length, "
                             "--tokenizer or --revision, or run against the server to choose")
        return matching[0]

    def probe(self) -> Awaitable[list[str | None]] | None:
        return None

    def plan(self, dataset: Dataset) -> Plan:
        assert self.model is not None
        return self.rewards.plan(self.model.render, dataset)

    def lookup(self, cache: Cache, on_answer: AnswerCallback) -> int:
        return self.rewards.lookup(cache, on_answer)

    async def before_sending(self, cache: Cache, probe: Awaitable[list[str | None]] | None) -> None:
        cache.writable(f"{len(self.rewards.missing)} new rewards")
        if not self.config.execution.engine.offline:
            await self._probe(cache)

    async def _probe(self, cache: Cache) -> None:
        """Score the fixed PROBES on every replica, raw and with the activation on, before any
        answer is scored. Refuse a replica that applies a sigmoid whatever it is asked (its
        rewards are probabilities), and replicas whose raw rewards disagree with each other or
        with the servers whose rewards the cache holds for this model; then keep what each
        replica answered, so later runs can be checked against it."""
        from .local_rm import ScoreItem

        tokenizer = self.model
        assert isinstance(tokenizer, ServedTokenizer)
        digests = [text_sha256(tokenizer.render(ScoreItem(probe[:-1], probe[-1][1]))) for probe in PROBES]
        inputs = [tokenizer.tokens(ChatRequest(self.config.task.judge.model, probe, max_tokens=0))[0]
                  for probe in PROBES]

        async def both(server: VllmServer, limit: float) -> tuple[list[float], list[float]]:
            return await server.pool(inputs, limit), await server.pool(inputs, limit, activation=True)

        answers = await self._ask_each(both, "cannot score the probe inputs on {where}")
        spec = self.config.task.judge.spec
        raw: dict[str, list[float]] = {}
        for server, (plain, activated) in zip(self._replicas(), answers, strict=True):
            where = server.endpoints[0]
            if all(0.0 <= r <= 1.0 for r in plain) and _agree(plain, activated):
                raise FatalProviderError(
                    f"{spec}: {where} applies a sigmoid to its rewards whatever use_activation says (vLLM before "
                    f"0.12 does; probe rewards {_shown(plain)}): probabilities squeeze large rewards into ties, "
                    "so serve the model with vLLM 0.12 or later"
                )
            raw[where] = plain
        reference, values = next(iter(raw.items()))
        for where, plain in raw.items():
            if not _agree(values, plain):
                raise UsageError(
                    f"{spec}: the --base-url servers give different rewards for the same input ({reference}: "
                    f"{_shown(values)}; {where}: {_shown(plain)}): serve the model the same way on each (one "
                    "checkpoint, vLLM version, --pooler-config and --hf-overrides)"
                )
        holding = set(cache.reward_endpoints(self.rewards.identity))
        for where, earlier in cache.probes(self.rewards.identity).items():
            if where not in holding or not all(d in earlier for d in digests):
                continue  # none of its rewards is left, or it was probed with other inputs
            cached = [earlier[d] for d in digests]
            if not _agree(cached, values):
                raise UsageError(
                    f"{spec}: {reference} gives rewards unlike those cached for this model from {where} "
                    f"({_shown(values)} here, {_shown(cached)} there, for the same inputs): one of them serves "
                    "it differently (another checkpoint under the same path, other pooling, a sigmoid). If the "
                    f"cached ones are wrong, `rmb-judge cache prune --endpoint {where} --cache "
                    f"{self.config.execution.cache}` removes them"
                )
        cache.put_probes(self.rewards.identity, {where: dict(zip(digests, plain, strict=True))
                                                 for where, plain in raw.items()})

    async def fetch(self, only: set[Hashable] | None = None) -> None:
        """Score the missing answers (those in `only`, a --precision round's) through the engine,
        one request each."""
        model = self.config.task.judge.model
        rewards = self.rewards
        meter, cache = rewards.meter, rewards.cache
        assert meter is not None and rewards.plan_ is not None and cache is not None

        def scored(key: tuple[str, int], outcome: Outcome) -> None:
            if outcome.response is None:
                self.failures.append(outcome.error or "failed")
                return
            reward = cached_reward(outcome.response)
            if not outcome.cached:  # (cached: scored by another process sharing the cache meanwhile)
                meter.update(1, reward.tokens)  # each answer a chunk of its own
                meter.chunk_done(reward.truncated)
            rewards.add(key[0], reward, cached=outcome.cached)

        jobs = []
        for digest in rewards.wanted(only):
            item = rewards.plan_.items[digest]
            messages = (*item.conversation, ("assistant", item.answer))
            jobs.append(Job(digest, 0, ChatRequest(model, messages, max_tokens=0, temperature=None)))
        servers = self._servers()
        self.engine = Engine(servers, cache, self.config.execution.engine, stats=self.stats, on_outcome=scored,
                             store=RewardStore(cache, self.rewards.identity, model, servers.endpoints))
        if self._stopping:
            self.engine.stop(self._stopping)
        try:
            await self.engine.send(jobs)
        finally:
            self.engine.close()

    def stop(self, reason: str) -> str:
        self._stopping = reason
        if self.engine is not None:
            self.engine.stop(reason)
        return "the requests in flight"

    def verdict(self, index: int) -> Judged | None:
        return self.rewards.verdict(index)

    def estimate(self, dataset: Dataset) -> dict[str, Any]:
        assert self.model is not None
        return self.rewards.estimate(self.model.render, dataset)

    def status(self) -> Status:
        meter, plan = self.rewards.meter, self.rewards.plan_
        assert meter is not None and plan is not None
        stats = self.stats
        return Status(self._stopping or stats.stopped_reason, stats.stop_detail, stats.requests > 0,
                      len(plan.items), len(self.rewards.cached), meter.answers)

    def metrics(self) -> dict[str, str]:
        shown = self.rewards.meter.metrics() if self.rewards.meter else {}
        stats = self.stats
        shown.update({"requests": str(stats.requests), "in flight": str(stats.in_flight),
                      "retries": str(stats.retries), "failed": str(stats.failed)})
        if stats.rate_limited:
            shown["rate limited"] = str(stats.rate_limited)
        if isinstance(self.provider, RoundRobin):
            shown["answered per replica"] = ", ".join(str(n) for n in self.provider.answered.values())
        if stats.paused_until > time.monotonic():
            shown["paused"] = f"{stats.paused_until - time.monotonic():.0f} s (the server asked)"
        return shown

    def report(self, judged: list[Judged], indices: list[int]) -> tuple[Usage, list[str]]:
        return self.rewards.usage(judged), self._warnings()

    def _warnings(self) -> list[str]:
        assert self.model is not None
        noticed = self.rewards.warnings(self.model.max_length, self.heard)
        # rewards from servers that were probed are known to be raw; those cached before are not
        values = [r.reward for r in self.rewards.values.values() if r.endpoint is None]
        if len(values) >= SIGMOID_SUSPECT and all(0.0 <= v <= 1.0 for v in values):
            noticed.append(
                f"all {len(values)} rewards cached before rmb-judge probed its servers lie between 0 and 1: "
                "the server may have applied a sigmoid (vLLM before 0.12 ignores use_activation), which can "
                "turn large rewards into ties"
            )
        if self.failures:
            noticed.append(f"{len(self.failures)} answers could not be scored (last: {self.failures[-1]}); "
                           "their comparisons are left out and a rerun scores them")
        return noticed

    async def aclose(self) -> None:
        if self.provider is not None:
            await self.provider.aclose()


def _agree(a: list[float], b: list[float]) -> bool:
    """Two servers' rewards of the same inputs are the same model's, within REWARD_TOLERANCE."""
    scale = max(1.0, *(abs(v) for v in (*a, *b)))
    return all(abs(x - y) <= REWARD_TOLERANCE * scale for x, y in zip(a, b, strict=True))


def _shown(rewards: list[float]) -> str:
    return "[" + ", ".join(f"{r:.4g}" for r in rewards) + "]"


def _described(facts: dict) -> str:
    """A cached served model as a user tells it apart: its weights and what its inputs were cut to."""
    shown = [f"root {facts.get('root')}", f"max_length {facts.get('max_length')}"]
    if facts.get("tokenizer") != facts.get("root"):
        shown.append(f"tokenizer {facts.get('tokenizer')}")
    if facts.get("revision"):
        shown.append(f"revision {facts.get('revision')}")
    return ", ".join(shown)
