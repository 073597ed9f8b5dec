"""Generative judges' part of a run (pipeline.py): each presentation rendered into requests,
the requests answered from the cache or through the engine (live) or the provider's batch
API, and each presentation's verdict read from its answers.

A template with a follow-up turn (`follow_up`) asks again, once, when the first reply states
no verdict label at all: the follow-up request (the first request's messages, the reply, the
follow-up text) is an ordinary cached request whose key covers the reply, known once the
reply is (found in the cache, answered live or in a batch). It joins the engine's queue
while the engine runs, or goes out in a second round (a second batch, or the next --precision
round); `--offline` needs it cached like any other answer, and `estimate` counts the
follow-ups it cannot know yet as "up to N more".
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import sys
import time
from collections.abc import Awaitable, Hashable, Sequence

from . import endpoints as ep
from . import memo, rendering, templates, verdict_probs
from .batch import BatchRunner, batched
from .benchmark import Benchmark
from .cache import Cache
from .config import TOP_LOGPROBS, RunConfig
from .costs import Estimator
from .engine import Engine, Job, Outcome, Stats, Trial, answer_cost
from .errors import Declined, FatalProviderError, UsageError
from .judges import JudgeSpec
from .judgments import Judged, Presentation
from .pipeline import AnswerCallback, Plan, Status, settings_of
from .providers.base import ChatRequest, ChatResponse
from .records import Dataset
from .scoring import majority
from .summary import Results, Usage
from .verdicts import form_of, looks_like_refusal, parse_rating, parse_verdict, style_of, verdict_from_ratings

TRIAL_SHARE = 0.5  # the first live answers: stop when more than this share holds no verdict
COUNTED = 2000  # requests whose input tokens the cost line counts (the rest in proportion)

Answer = tuple[str, int]  # (request key, sample)


class GenerativePlan:
    """Which requests (cache key and sample index) decide each presentation's verdict.

    The keys of a plan whose inputs did not change come from the memo (rendering and hashing
    every prompt again is most of a fully cached rerun); requests themselves are rendered
    only for the keys the cache does not hold. A presentation whose template has a follow-up
    turn may come to need one more request (`follow_up`).
    """

    # the code a request key depends on (memo.code_digest), besides the benchmark's own module
    RENDERING = ("records.py", "benchmark.py", "judgments.py", "rendering.py", "templates.py", "cache.py",
                 "providers/base.py", "generative.py")

    def __init__(self, config: RunConfig, benchmark: Benchmark, dataset: Dataset, template: templates.Template):
        task = config.task
        self.samples = task.samples
        order = task.order_for(benchmark)
        self.presentations: list[Presentation] = []
        self.templates: list[templates.Template] = []  # each presentation's (a benchmark may ask a record its own way)
        for record in dataset.records:
            asked = benchmark.template_for(record, template)
            mode = "fixed" if asked.kind == "pointwise" else order
            for judgment in benchmark.judgments(record, asked.kind):
                for shown in benchmark.orders_for(judgment, mode, task.selection.seed):
                    self.presentations.append(Presentation(judgment, shown))
                    self.templates.append(asked)
        self.settings = rendering.RequestSettings(task.judge.provider, task.judge.model, task.max_tokens_for(template),
                                                  task.temperature, TOP_LOGPROBS if task.verdict_probs else 0)
        # a record asked with a template of its benchmark's own gets that template's answer length cap
        self._settings = {t.sha256: dataclasses.replace(self.settings, max_tokens=task.max_tokens_for(t))
                          for t in self.templates}
        self.probs = task.verdict_probs
        self._requests: dict[str, ChatRequest] = {}
        memo_name = "plan-" + memo.fingerprint(
            benchmark.name, sorted(dataset.sha256.items()), dataclasses.asdict(task.selection),
            sorted({(t.key_sha256, t.sha256) for t in self.templates}), dataclasses.asdict(self.settings), order,
            memo.code_digest(*self.RENDERING), memo.file_digest(inspect.getfile(type(benchmark))),
        )
        request_keys = memo.read(memo_name)
        if not (isinstance(request_keys, list) and len(request_keys) == len(self.presentations)):
            request_keys = []
            for p, asked in zip(self.presentations, self.templates, strict=True):
                pairs = rendering.requests_for(p, asked, self._settings[asked.sha256])
                self._requests.update(pairs)
                request_keys.append(tuple(key for key, _ in pairs))
            memo.write(memo_name, request_keys)
        self._first: dict[str, int] = {}  # request key -> a presentation that renders it
        self._units: dict[Answer, list[int]] = {}  # follow-up turns' parents -> their presentations
        for index, keys in enumerate(request_keys):
            for key in keys:
                self._first.setdefault(key, index)
        self.keys: list[list[Hashable]] = [
            [(key, s) for key in keys for s in range(self.samples)] for keys in request_keys
        ]
        self.first_keys = [tuple(keys) for keys in self.keys]  # without follow-ups
        self.follow_ups: dict[Answer, Answer] = {}  # a first reply -> its follow-up turn
        self._follow_requests: dict[str, ChatRequest] = {}

    def answers(self) -> list[Answer]:
        """Every (request key, sample) the plan needs before any follow-up, once each."""
        return [(key, s) for key in self._first for s in range(self.samples)]

    def request(self, key: str) -> ChatRequest:
        if key in self._follow_requests:
            return self._follow_requests[key]
        if key not in self._requests:
            index = self._first[key]
            template = self.templates[index]
            self._requests.update(rendering.requests_for(self.presentations[index], template,
                                                          self._settings[template.sha256]))
        return self._requests[key]

    def jobs(self, wanted: Sequence[Answer] | None = None) -> list[Job]:
        """Jobs for these answers (default: all of them before follow-ups)."""
        return [Job(key, s, self.request(key)) for key, s in (self.answers() if wanted is None else wanted)]

    def follow_up(self, answer: Answer, response: ChatResponse) -> Job | None:
        """The follow-up turn a first reply calls for (its template has one, and the reply
        states no verdict label at all), once per reply: a new job, or None."""
        key, sample = answer
        if answer in self.follow_ups or key not in self._first:
            return None
        template = self.templates[self._first[key]]
        labelled = style_of(template.style).labelled if template.follow_up else None
        if labelled is None or labelled(response.text):
            return None
        second, request = rendering.follow_up(template, self._settings[template.sha256], self.request(key),
                                              response.text)
        self._follow_requests[second] = request
        self.follow_ups[answer] = (second, sample)
        return Job(second, sample, request)

    def is_follow_up(self, key: str) -> bool:
        return key in self._follow_requests

    def units_of(self, answer: Answer) -> list[int]:
        """The presentations a (first) answer decides."""
        if not self._units:
            for index, keys in enumerate(self.first_keys):
                for key in keys:
                    self._units.setdefault(key, []).append(index)  # type: ignore[arg-type]
        return self._units.get(answer, [])

    def judge(self, index: int, outcomes: dict[Answer, Outcome]) -> Judged | None:
        """The presentation's verdict, or None while any of its answers is missing."""
        template = self.templates[index]
        keys = self.first_keys[index]
        presentation = self.presentations[index]
        if len(keys) == 1 and template.kind == "pairwise" and not template.follow_up:  # the common case, quickly
            outcome = outcomes.get(keys[0])  # type: ignore[call-overload]
            if outcome is None:
                return None
            response = outcome.response
            if response is None:
                return Judged(presentation, None, None, outcome.cached, outcome.error,
                              outcome.rejected, votes=(None,))
            read = parse_verdict(response.text, template.style)
            refused = read is None and (response.refusal or looks_like_refusal(response.text))
            return Judged(presentation, read, response.text, outcome.cached,
                          refused=refused, truncated=response.truncated, votes=(read,),
                          probs=self._probs(template, response, read))
        wanted = [[outcomes.get(k) for k in keys[s::self.samples]] for s in range(self.samples)]  # type: ignore[call-overload]
        if any(o is None for sample in wanted for o in sample):
            return None
        votes: list[str | float | None] = []
        raws: list[object] = []
        errors: list[Outcome] = []
        refusals, truncated = 0, False
        located: list[verdict_probs.Probs] = []
        everything = [o for sample in wanted for o in sample if o is not None]
        for s, sample in enumerate(wanted):
            failed = next((o for o in sample if o is not None and o.response is None), None)
            if failed:
                errors.append(failed)
                votes.append(None)
                raws.append(None)
                continue
            responses = [o.response for o in sample if o is not None and o.response is not None]
            texts = [r.text for r in responses]
            if template.kind == "pairwise" and template.follow_up:
                second = self.follow_ups.get(keys[s])  # type: ignore[call-overload]
                if second is not None:  # the first reply stated no label: the verdict is read from both
                    outcome = outcomes.get(second)
                    if outcome is None:
                        return None
                    everything.append(outcome)
                    if outcome.response is None:
                        errors.append(outcome)
                        votes.append(None)
                        raws.append(None)
                        continue
                    responses.append(outcome.response)
                    texts = ["\n" + texts[0] + "\n" + outcome.response.text]
                vote: str | float | None = parse_verdict(texts[0], template.style)
                raws.append(texts[0])
            elif template.kind in ("pairwise", "ranking"):
                said = parse_verdict(texts[0], template.style)
                vote = said
                raws.append(texts[0])
                if (probs := self._probs(template, responses[0], said)) is not None:
                    located.append(probs)
            elif template.kind == "rating":
                vote = parse_rating(texts[0]) if template.style == "pointwise" else parse_verdict(texts[0],
                                                                                               template.style)
                raws.append(texts[0])
            else:
                vote = verdict_from_ratings(parse_rating(texts[0]), parse_rating(texts[1]))
                raws.append({"A": texts[0], "B": texts[1]})
            truncated |= any(r.truncated for r in responses)
            if vote is None and any(r.refusal or looks_like_refusal(r.text) for r in responses):
                refusals += 1
            votes.append(vote)
        # a sample that failed leaves the vote short: the presentation fails with it (and a
        # rerun asks again), rather than be decided by fewer votes than --samples says
        verdict = None if errors else majority(votes)
        return Judged(
            presentation=presentation,
            verdict=verdict,
            raw=raws[0] if self.samples == 1 else raws,
            cached=all(o.cached for o in everything),
            error=errors[0].error if errors else None,
            rejected=bool(errors) and all(o.rejected for o in errors),
            refused=verdict is None and not errors and refusals > 0,
            truncated=truncated,
            votes=tuple(votes),
            probs=None if errors else verdict_probs.mean(located),
        )

    def _probs(self, template: templates.Template, response: ChatResponse, vote: str | None
               ) -> verdict_probs.Probs | None:
        """--verdict-probs: P(A), P(B), P(tie) at the token stating the answer's verdict."""
        if not self.probs:
            return None
        return verdict_probs.read(response.text, response.logprobs, template.style, vote)


class GenerativeJudge:
    """A generative judge's pipeline (pipeline.Pipeline): requests from the plan, answered from
    the cache, then by the engine (live, or through the provider's batch API)."""

    progress_rows = "comparisons"

    def __init__(self, config: RunConfig, benchmark: Benchmark):
        from .judges import make_provider

        self.config = config
        self.benchmark = benchmark
        task = config.task
        self.template = templates.load(task.template or benchmark.default_template)
        self.template.check_goals(benchmark.goals)
        if task.verdict_probs:
            check_verdict_probs(task.judge, self.template)
        self.settings = settings_of(config, benchmark, self.template)
        self.provider = make_provider(task.judge, list(config.execution.base_urls), config.execution.engine.concurrency)
        self.settings.endpoints = list(self.provider.endpoints)
        self.estimate = Estimator(task.judge.provider_class, task.judge.model, self.template.style,
                                  task.max_tokens_for(self.template), config.execution.batch,
                                  endpoints=self.provider.endpoints, price=config.execution.price,
                                  verdict_tokens=self.template.output_tokens)
        # answers from these endpoints serve this run: its own, and those declared equivalent
        extra = tuple(ep.normalize(url, task.judge.provider_class.api_path)
                      for url in config.execution.equivalent_endpoints)
        self.endpoints = tuple(dict.fromkeys((*self.provider.endpoints, *extra)))
        self.stats = Stats()
        self.plan_: GenerativePlan | None = None
        self.planned: Plan | None = None
        self.engine: Engine | None = None
        self.batches: BatchRunner | None = None
        self.misses: list[Job] = []
        self._sending = False  # the engine is sending: a follow-up joins its queue
        self._later: list[Job] = []  # follow-ups to send once it is not

    async def prepare(self) -> None:
        task, execution = self.config.task, self.config.execution
        if execution.engine.max_cost is not None and (why := self.estimate.unpriced()):
            raise UsageError(f"--max-cost: spend cannot be budgeted, as the price of {task.judge.spec} is {why}")
        if not execution.engine.offline:
            self.provider.prepare()  # the API key, before any data is read

    def probe(self) -> Awaitable[list[str | None]] | None:
        if self.config.execution.engine.offline or self.config.task.judge.simulated:
            return None
        return asyncio.gather(*(ep.unreachable(url) for url in self.provider.endpoints))

    def plan(self, dataset: Dataset) -> Plan:
        self.plan_ = GenerativePlan(self.config, self.benchmark, dataset, self.template)
        self.planned = Plan(self.plan_.presentations, self.plan_.keys)
        return self.planned

    def lookup(self, cache: Cache, on_answer: AnswerCallback) -> int:
        execution = self.config.execution
        plan = self.plan_
        assert plan is not None

        def answered(key: tuple[str, int], outcome: Outcome) -> None:
            if outcome.response is not None and (job := plan.follow_up(key, outcome.response)) is not None:
                self._follow(job, key)
            on_answer(key)

        self.engine = Engine(
            self.provider, cache, execution.engine,
            template=self.template.name, template_sha256=self.template.sha256, pricing=self.estimate,
            stats=self.stats, on_outcome=answered, endpoints=self.endpoints, trial=self._trial(),
        )
        self.batches = BatchRunner(self.engine, execution.poll_interval)
        misses = self.engine.lookup(plan.answers(), strict=False)
        while self._later:  # follow-ups of cached replies: cached too, or to send
            found, self._later = self._later, []
            misses += self.engine.lookup([(j.key, j.sample) for j in found], strict=False)
        if self.config.task.precision is None:  # (a --precision run needs only some of them: it checks its own)
            self.engine.offline_misses(misses)
        self.misses = plan.jobs(misses)
        self._learn_tokens()
        return len(self.misses)

    def _follow(self, job: Job, parent: tuple[str, int]) -> None:
        """A reply called for its follow-up turn: its presentations now need it too, and it goes
        to the engine (while the engine sends) or waits for the next round."""
        assert self.plan_ is not None and self.planned is not None and self.engine is not None
        self.planned.need((job.key, job.sample), self.plan_.units_of(parent))
        if not (self._sending and self.engine.add([job])):
            self._later.append(job)

    def _trial(self) -> Trial | None:
        """The check of the first live answers (engine.Trial): stop when most hold no verdict,
        unless --max-unparsed allows that many (a batch is paid whole before it is read)."""
        execution, style = self.config.execution, self.template.style
        most = max(TRIAL_SHARE, execution.max_unparsed)
        if execution.batch or most >= 1:
            return None

        labelled = style_of(style).labelled if self.template.follow_up else None

        def readable(response: ChatResponse) -> bool | None:
            text = response.text
            if (parse_rating(text) if style == "pointwise" else parse_verdict(text, style)) is not None:
                return True
            if labelled is not None and not labelled(text):
                return None  # its follow-up turn decides
            return None if response.refusal or looks_like_refusal(text) else False

        return Trial(readable, style, form_of(style), most)

    def _learn_tokens(self, sample: int = 200) -> None:
        """How the provider counts tokens against our count, from answers already in the
        cache: a budget then reserves enough from the first request on (a batch, which
        learns nothing before it ends, most of all)."""
        assert self.engine is not None and self.plan_ is not None
        if self.config.execution.engine.max_cost is None:
            return
        counted = 0
        for key, outcome in self.engine.outcomes.items():
            response = outcome.response
            if response is not None and response.usage_reported and response.input_tokens:
                ours = self.estimate.tokens(self.plan_.request(key[0]))[0]
                if ours:
                    self.engine.learn_ratio(response.input_tokens / ours)
                    counted += 1
                    if counted >= sample:
                        return

    async def before_sending(self, cache: Cache, probe: Awaitable[list[str | None]] | None) -> None:
        """Say when the cache holds answers from another endpoint, refuse a read-only cache,
        and stop if an endpoint cannot be reached."""
        misses = self.misses
        elsewhere = cache.other_endpoints(((j.key, j.sample) for j in misses), self.endpoints)
        if elsewhere.answered:
            listed = ", ".join(f"{n} from {e}" for e, n in elsewhere.endpoints.items())
            print(f"rmb-judge: the cache holds answers to {elsewhere.answered} of the "
                  f"{len(misses)} requests to send, from other endpoints ({listed}); they are not "
                  "used for this endpoint (--equivalent-endpoint URL declares one the same)",
                  file=sys.stderr)
        cache.writable(f"{len(misses)} new answers")
        if probe is not None:
            for url, reason in zip(self.provider.endpoints, await probe, strict=True):
                if reason:
                    raise FatalProviderError(f"cannot reach {url}: {reason}; nothing was sent")
        if not self.config.execution.engine.offline and not self.config.task.judge.simulated:
            self._confirm_cost()

    def _confirm_cost(self) -> None:
        """Before the first request: one line with what the requests to send are estimated to
        cost (as `estimate` reckons it) and, on a terminal, above --confirm-above, a question."""
        execution = self.config.execution
        paid = batched(self.batches.pending(self.misses)) if self.batches else set()  # collected, not sent
        misses = [j for j in self.misses if (j.key, j.sample) not in paid]
        if not misses:
            return
        counted = misses[:: max(1, len(misses) // COUNTED)]
        input_tokens = round(sum(self.estimate.tokens(j.request)[0] for j in counted) * len(misses) / len(counted))
        output_tokens = len(misses) * self.estimate.output_tokens
        cost = self.estimate.cost(input_tokens, output_tokens)
        whole = self.config.task.precision is not None  # a --precision run sends a sample of them
        sampled = f" (counted on {len(counted):,} of them)" if len(counted) < len(misses) else ""
        tokens = (f"{input_tokens:,} input tokens{sampled}, "
                  f"{output_tokens:,} output tokens assumed: {self.estimate.output_tokens} per request")
        said = (f"estimated {'at most ' if whole else ''}${cost:.4f}" if cost is not None
                else f"cost unknown (the price of {self.config.task.judge.spec} is {self.estimate.unpriced()})")
        print(f"rmb-judge: {len(misses)} requests to send: {said} ({tokens})"
              + ("; --precision sends only the sample it needs of them" if whole else ""), file=sys.stderr)
        spend = None if cost is None else min(cost, execution.engine.max_cost or cost)
        if spend is None or execution.confirm_above is None or spend <= execution.confirm_above:
            return
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return  # a script: never blocked
        print(f"rmb-judge: ${spend:.4f} is above --confirm-above ${execution.confirm_above:g}: send them? [y/N] ",
              end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise Declined("not confirmed: nothing was sent (--yes skips the question, --confirm-above USD "
                           "sets the threshold)")

    async def fetch(self, only: set[Hashable] | None = None) -> None:
        """Send the misses (those in `only`, a --precision round's) live or in batches, and the
        follow-up turns their replies call for. Misses a pending batch holds (an interrupted
        --batch run, or another process's) are collected from that batch either way: it is
        paid for already."""
        assert self.engine is not None
        misses = self.misses if only is None else [j for j in self.misses if (j.key, j.sample) in only]
        while misses and not self.engine.stopping:
            await self._send(misses)
            misses, self._later = self._later, []  # follow-ups of replies the engine was not sending for
        self.misses = [j for j in self.misses if (j.key, j.sample) not in self.engine.outcomes] + misses

    async def _send(self, misses: list[Job]) -> None:
        assert self.engine is not None and self.batches is not None
        if self.config.execution.batch:
            await self.batches.run(misses)
            return
        pending = await self.batches.resume(misses)
        in_batches = batched(pending)
        live = [j for j in misses if (j.key, j.sample) not in in_batches]
        if pending:
            print(f"rmb-judge: {len(misses) - len(live)} answers are in {len(pending)} batches "
                  "submitted before; collecting them from there", file=sys.stderr)
        self._sending = True
        try:
            await self.batches.collect(pending, [j for j in misses if (j.key, j.sample) in in_batches],
                                       self.engine.send(live))
        finally:
            self._sending = False

    def stop(self, reason: str) -> str:
        assert self.engine is not None and self.batches is not None
        self.batches.stop()  # a batch being submitted is recorded first; polling stops
        self.engine.stop(reason)
        if self.batches.submitting:
            return "the batch being created to be recorded (it is paid for)"
        return f"the {self.stats.in_flight} requests in flight, whose answers are paid for"

    def verdict(self, index: int) -> Judged | None:
        assert self.plan_ is not None and self.engine is not None
        return self.plan_.judge(index, self.engine.outcomes)

    def status(self) -> Status:
        stats = self.stats
        return Status(stats.stopped_reason, stats.stop_detail, stats.requests > 0, stats.total, stats.cache_hits,
                      stats.requests, self.engine.unsaved if self.engine else [])

    def metrics(self) -> dict[str, str]:
        stats = self.stats
        shown = {
            "in flight": str(stats.in_flight),
            "req/s": f"{stats.requests_per_second():.1f}",
            "cache hits": str(stats.cache_hits),
            "retries": str(stats.retries),
            "429s": str(stats.rate_limited),
            "tokens": f"{stats.input_tokens:,} in / {stats.output_tokens:,} out",
            "spend": spend_line(stats, self.config.execution.engine.max_cost, self.config.task.precision is None),
            "concurrency": f"{stats.concurrency_limit:.0f}",
        }
        if stats.answered_elsewhere or stats.waiting_elsewhere:
            shown["other process"] = f"{stats.answered_elsewhere} answered, {stats.waiting_elsewhere} in flight"
        wait = stats.paused_until - time.monotonic()
        if wait > 1:
            shown["waiting"] = f"{wait:.0f} s for the provider's rate limit"
        if self.batches and self.batches.progress.batches:
            shown.update(self.batches.progress.metrics())
        return shown

    def report(self, judged: list[Judged], indices: list[int]) -> tuple[Usage, list[str]]:
        return self._usage(judged, indices), self._warnings()

    def _usage(self, judged: list[Judged], indices: list[int]) -> Usage:
        """What this invocation sent and spent, and (`results`) what the answers behind the
        scores cost, whichever run or batch paid for them."""
        assert self.plan_ is not None and self.engine is not None
        stats, outcomes = self.stats, self.engine.outcomes
        used = {k for i in indices for k in self.plan_.keys[i]}
        answers = [r for k in used if k in outcomes and (r := outcomes[k].response) is not None]
        # each answer as priced when it was paid; one kept without a price, at this run's price
        costs = [r.cost_usd if r.cost_usd is not None else answer_cost(self.estimate, r) for r in answers]
        return Usage(
            requests=stats.requests,
            cache_hits=sum(1 for j in judged if j.cached),
            answered_elsewhere=stats.answered_elsewhere,
            retries=stats.retries,
            rate_limited=stats.rate_limited,
            connect_errors=stats.connect_errors,
            failed=sum(1 for j in judged if j.error),
            rejected=sum(1 for j in judged if j.error and j.rejected),
            unparsed=sum(1 for j in judged if j.verdict is None and not j.error and not j.refused),
            refused=sum(1 for j in judged if j.refused),
            truncated=sum(1 for j in judged if j.truncated),
            unread_votes=sum(1 for j in judged if not j.error and len(j.votes) > 1 for v in j.votes if v is None),
            input_tokens=stats.input_tokens,
            output_tokens=stats.output_tokens,
            cache_read_tokens=stats.cache_read_tokens,
            cache_write_tokens=stats.cache_write_tokens,
            cost_usd=stats.cost_usd if stats.cost_known else None,
            unconfirmed_cost_usd=stats.unconfirmed_cost_usd,
            usage_counted_locally=stats.usage_counted,
            unsaved_answers=stats.unsaved,
            results=Results(
                answers=len(answers),
                input_tokens=sum(r.input_tokens for r in answers),
                output_tokens=sum(r.output_tokens for r in answers),
                cache_read_tokens=sum(r.cache_read_tokens for r in answers),
                cache_write_tokens=sum(r.cache_write_tokens for r in answers),
                cost_usd=None if None in costs else sum(c for c in costs if c is not None),
            ),
            cost_method=self.estimate.describe(),
        )

    def _warnings(self) -> list[str]:
        stats, noticed = self.stats, []
        if stats.usage_counted:
            noticed.append(f"{stats.usage_counted} answers came without token usage from the "
                           "server; their tokens were counted locally, so their cost is an estimate")
        if stats.unconfirmed_cost_usd:
            noticed.append(f"up to ${stats.unconfirmed_cost_usd:.4f} may have been billed for "
                           "requests that timed out or were cut off (counted against --max-cost)")
        if stats.unsaved:
            noticed.append(f"{stats.unsaved} answers could not be stored in the cache (the disk is "
                           "full); they were kept beside it or in the run folder, and the next run "
                           "adds them to the cache")
        if stats.dropped:
            noticed.append(f"{stats.dropped} requests were dropped in flight (a second Ctrl-C or the "
                           "end of --grace); the provider may bill them (counted as unconfirmed cost)")
        assumed = sum(1 for o in self.engine.outcomes.values()
                      if o.response is not None and o.response.extra.get("endpoint_assumed")) if self.engine else 0
        if assumed:
            noticed.append(f"{assumed} answers were cached before rmb-judge recorded endpoints; they are "
                           f"assumed to come from {self.config.task.judge.provider_class.official_endpoint}, "
                           "which cannot be checked")
        unpriced = sum(1 for o in self.engine.outcomes.values()
                       if o.response is not None and o.response.cost_usd is None) if self.engine else 0
        if unpriced and (why := self.estimate.unpriced()):
            noticed.append(f"{unpriced} answers have no cost: the price of {self.config.task.judge.spec} is {why}")
        if self.batches:
            noticed += self.batches.notices
        if stats.stop_detail:
            noticed.append(stats.stop_detail)
        return noticed

    async def aclose(self) -> None:
        if self.engine is not None:
            self.engine.close()
        await self.provider.aclose()


def check_verdict_probs(judge: JudgeSpec, template: templates.Template) -> None:
    """--verdict-probs needs answers with token logprobs and a verdict stated in one token."""
    if why := judge.provider_class.no_logprobs(judge.model):
        raise UsageError(f"--verdict-probs: {why}")
    if template.kind != "pairwise" or template.style not in verdict_probs.STYLES:
        raise UsageError(f"--verdict-probs: template {template.name} states its verdict in several tokens or "
                         f"answers (style {template.style}); use one of style {' or '.join(verdict_probs.STYLES)}, "
                         "e.g. --template verdict (the verdict alone) or rmb")


def spend_line(stats: Stats, max_cost: float | None, project: bool = True) -> str:
    """This run's spend, against --max-cost, with the total projected from the cost per
    answer so far (not for a --precision run, which will not send all it could: its live view
    counts its round's requests instead)."""
    if not stats.cost_known:
        return "price unknown"
    line = f"${stats.spent:.4f}"
    if max_cost is not None:
        line += f" of ${max_cost:g} max"
    answered = stats.done - stats.cache_hits - stats.answered_elsewhere
    remaining = stats.total - stats.done
    if project and answered > 0 and remaining > 0:
        line += f", projected ${stats.spent + stats.spent / answered * remaining:.4f}"
    return line
