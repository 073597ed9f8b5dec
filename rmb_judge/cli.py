"""The `rmb-judge` command line: run, estimate, compare, report, view, cache, data."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import __version__, benchmarks, records
from .config import CONFIRM_ABOVE, VIEW_PORT, EngineConfig, Execution
from .errors import RmbJudgeError, UsageError
from .records import Selection

if TYPE_CHECKING:  # the rest is imported by the command that needs it: `--help` stays instant
    from rich.console import Console

    from .benchmark import Benchmark
    from .cache import Cache
    from .config import RunConfig
    from .judges import JudgeSpec

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_FATAL = 3
EXIT_OFFLINE_MISS = 4
EXIT_BUDGET = 5
EXIT_SUSPECT = 6
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # as for a process SIGPIPE ended
EXIT_CODES = f"""exit status:
  0    the run completed and is not suspect
  {EXIT_INCOMPLETE}    incomplete: comparisons failed after all retries (rerun to retry them), the
       provider asked to wait longer than --max-wait, or the cache could not be written
  {EXIT_USAGE}    bad flags, data, template or cache file
  {EXIT_FATAL}    fatal provider error: bad or missing key, unknown model, unreachable endpoint
  {EXIT_OFFLINE_MISS}    --offline and an answer is not in the cache
  {EXIT_BUDGET}    stopped before the next request could pass --max-cost (partial summary written;
       rerun to continue)
  {EXIT_SUSPECT}    completed, but suspect: more than --max-unparsed of the verdicts unread or failed;
       or stopped early: most of the first answers held no verdict the template reads
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C or SIGTERM; partial summary written)"""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming it, not the whole usage text, and no
    abbreviated flags (`--max-len` would slip past the check that a flag applies)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def csv_list(choices: tuple[str, ...]):
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad) or 'empty value'} (choose from {', '.join(choices)})"
            )
        return items

    return parse


def number(kind: type, low: float | None = None, high: float | None = None, above: bool = False):
    """A finite int or float within bounds (`above`: strictly greater than `low`); nan and
    inf are refused, since they silently turn a limit off."""

    def parse(value: str) -> int | float:
        try:
            parsed = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {value!r}") from None
        if not math.isfinite(parsed):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
        if low is not None and (parsed <= low if above else parsed < low):
            raise argparse.ArgumentTypeError(f"must be {'greater than' if above else 'at least'} {low:g}, got {value}")
        if high is not None and parsed > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {value}")
        return parsed

    return parse


positive_int = number(int, 1)
positive_float = number(float, 0, above=True)


def price_flag(value: str) -> tuple[float, float] | str:
    """--price IN,OUT (USD per million input and output tokens), or published."""
    if value.strip() == "published":
        return "published"
    parts = value.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"give IN,OUT, USD per million input and output tokens (e.g. 2.5,10), "
                                         f"or published; got {value!r}")
    per_input, per_output = (number(float, 0)(part.strip()) for part in parts)
    return float(per_input), float(per_output)


def fraction_of_records(value: str) -> float:
    """--sample: a fraction in (0, 1]; a count of votes was meant for --samples."""
    try:
        return number(float, 0, 1, above=True)(value)
    except argparse.ArgumentTypeError as error:
        if value.isdigit() and int(value) > 1:
            raise argparse.ArgumentTypeError(f"{error}: --sample is a fraction of the records (e.g. 0.1); for "
                                             f"{value} votes per comparison, --samples {value}") from None
        raise


KINDS_OF_VALUE = {"positive_int": positive_int, "nonnegative_float": number(float, 0), "price": price_flag}


def benchmark_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--benchmark", default=benchmarks.DEFAULT, choices=benchmarks.names(),
                        help=f"the benchmark to judge on (default {benchmarks.DEFAULT})")


def selection_flags() -> Parser:
    p = Parser(add_help=False)
    g = p.add_argument_group("benchmark and data selection")
    benchmark_flag(g)
    rmb = benchmarks.get()
    g.add_argument("--data", type=Path,
                   help="the benchmark's data folder (default: its variable, e.g. $RMB_DATA, else the folder "
                        "`data fetch` fills)")
    g.add_argument("--sets", type=csv_list(rmb.kinds),
                   help=f"rmb: {','.join(rmb.kinds)} (default all)")
    g.add_argument("--sections", type=csv_list(rmb.goals),
                   help=f"rmb: {','.join(rmb.goals)} (default all)")
    g.add_argument("--scenarios", action="append", default=[], metavar="GLOB",
                   help="fnmatch against the benchmark's subset names (rmb: category_path, e.g. '*Chat*'; "
                        "judgebench: source, e.g. 'mmlu-pro*') (repeatable)")
    g.add_argument("--limit", type=positive_int, help="first N records of each subset's file")
    g.add_argument("--sample", type=fraction_of_records, metavar="FRACTION",
                   help="a seeded random fraction of records, in (0, 1]")
    g.add_argument("--seed", type=int, default=Selection.seed,
                   help="seed for --sample, --precision and --order random (default 0)")
    g.add_argument("--precision", type=number(float, 0, 0.5, above=True), metavar="H",
                   help="judge a seeded random sample, stratified by subset and grown in rounds, until "
                        "the 95%% interval of overall is at most ±H (e.g. 0.02); a later run with a "
                        "smaller H, or without it, reuses every answer (README: How sure is a score?)")
    options: dict[str, list] = {}
    for benchmark in benchmarks.every():
        for option in benchmark.options:
            options.setdefault(option.flag, []).append((benchmark, option))
    for flag, owners in options.items():
        choices = tuple(dict.fromkeys(c for _, o in owners for c in o.choices))
        said = "; ".join(f"{b.name}: {o.help} (default {o.default})" for b, o in owners)
        g.add_argument(flag, choices=choices, help=said)
    return p


def judge_flags() -> Parser:
    from .judges import flag_groups, spec_forms

    p = Parser(add_help=False)
    g = p.add_argument_group("judge")
    g.add_argument("--judge", required=True, metavar="SPEC", help=f"{spec_forms()} (README: Judge specs)")
    g.add_argument("--cache", type=Path, default=Execution.cache,
                   help="cache folder or .sqlite3 file (default ./cache/)")
    g.add_argument("--offline", action="store_true", help="answer only from the cache; a miss is an error")
    for group in flag_groups():
        added = p.add_argument_group(group.title)
        for flag in group.flags:
            options = dict(flag.options)
            if "kind" in options:
                options["type"] = KINDS_OF_VALUE[options.pop("kind")]
            added.add_argument(*flag.names, **options)
    return p


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; `only`: the one command whose flags are built (the others are
    named with their help alone: run's flags need every benchmark and judge kind imported),
    "" none (`rmb-judge --help`), None all."""

    def wanted(command: str) -> bool:
        return only is None or only == command

    parser = Parser(
        prog="rmb-judge", description="Evaluate LLM judges and reward models on the RMB benchmark.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rmb-judge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")

    if wanted("run"):
        run = sub.add_parser("run", parents=[selection_flags(), judge_flags()], help="judge a benchmark and score it",
                             epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        run.add_argument("--out", type=Path, required=True, help="run folder for summary.json and samples.jsonl")
        run.add_argument("--replace", action="store_true",
                         help="--out may hold a run of another judge or other settings: overwrite it")
        run.add_argument("--json", action="store_true",
                         help="print summary.json to stdout at the end (the rest goes to stderr)")
        run.add_argument("--max-unparsed", type=number(float, 0, 1), default=Execution.max_unparsed, metavar="FRACTION",
                         help="a run with more than this share of comparisons unparsed or failed is "
                              "suspect (exit 6; default 0.05)")
        e = run.add_argument_group("engine")
        e.add_argument("--concurrency", type=positive_int, default=EngineConfig.concurrency,
                       help=f"requests in flight at most (default {EngineConfig.concurrency})")
        e.add_argument("--rpm", type=positive_float, help="requests per minute limit")
        e.add_argument("--tpm", type=positive_float, help="tokens per minute limit (estimated, corrected from usage)")
        e.add_argument("--max-retries", type=number(int, 0), default=EngineConfig.max_retries,
                       help=f"retries per request after 5xx, timeouts and broken answers (default "
                            f"{EngineConfig.max_retries}); 429s wait as the server asks, up to 100 times")
        e.add_argument("--timeout", type=positive_float, default=EngineConfig.timeout,
                       help=f"seconds per request or batch API call (default {EngineConfig.timeout:g})")
        e.add_argument("--max-cost", type=positive_float, metavar="USD",
                       help="stop starting requests before spend passes this")
        e.add_argument("--confirm-above", type=number(float, 0), default=CONFIRM_ABOVE, metavar="USD",
                       help="on a terminal, ask before sending requests estimated to cost more than this "
                            f"(default {CONFIRM_ABOVE:g}; scripts are never asked)")
        e.add_argument("--yes", action="store_true", help="do not ask before spending (see --confirm-above)")
        e.add_argument("--max-wait", type=positive_float, default=EngineConfig.max_wait, metavar="SECONDS",
                       help="a provider asking to wait longer than this (retry-after) stops the run "
                            f"with a partial summary instead of hanging (default {EngineConfig.max_wait:g})")
        e.add_argument("--grace", type=number(float, 0), default=Execution.grace, metavar="SECONDS",
                       help="after Ctrl-C, how long to wait for requests in flight, whose answers "
                            f"are paid for (default {Execution.grace:g}; a second Ctrl-C drops them)")
        e.add_argument("--poll-interval", type=positive_float, default=Execution.poll_interval,
                       help=f"--batch: seconds between batch status checks (default {Execution.poll_interval:g})")
        e.add_argument("--no-progress", action="store_true", help="plain periodic lines instead of the live view")
        e.add_argument("--progress-interval", type=positive_float, default=Execution.progress_interval,
                       help="seconds between plain lines")

    else:
        sub.add_parser("run", help="judge a benchmark and score it")

    if wanted("estimate"):
        est = sub.add_parser("estimate", parents=[selection_flags(), judge_flags()],
                             help="requests, tokens and cost a run would need")
        est.add_argument("--json", action="store_true", help="print one JSON object")

    else:
        sub.add_parser("estimate", help="requests, tokens and cost a run would need")

    cmp = sub.add_parser("compare", help="paired difference of two runs on the records both scored",
                         description="The difference A - B of every section score and of overall on the "
                                     "records both runs scored (same scenario, uid and data file), with a "
                                     "paired 95% interval and a sign-flip test's p-value.")
    cmp.add_argument("run_a", type=Path, metavar="RUN_A", help="a run folder (run --out)")
    cmp.add_argument("run_b", type=Path, metavar="RUN_B", help="the run folder to compare it with")
    cmp.add_argument("--json", action="store_true", help="print one JSON object")

    jury = sub.add_parser("jury", help="a panel of judges: a run built from the verdicts of runs already made",
                          description="A run folder whose verdicts are the member runs' majority (or their mean "
                                      "probability) on the records they all scored (same scenario, uid and data "
                                      "file); no request is sent and no cache opened. Scored with intervals like "
                                      "any run; compare and report read it as one.")
    jury.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                      help="the member runs' folders (run --out); their shared records are judged by the jury")
    jury.add_argument("--out", type=Path, required=True, help="run folder for the jury's summary.json and samples")
    jury.add_argument("--rule", default="majority", choices=("majority", "mean-prob"),
                      help="majority of the members' verdicts (a split is a tie), or the verdict of their mean "
                           "probabilities (members run with --verdict-probs) (default majority)")
    jury.add_argument("--data", type=Path, help="the data folder the runs judged (default: the one they recorded)")
    jury.add_argument("--replace", action="store_true", help="--out may hold another run: overwrite it")
    jury.add_argument("--json", action="store_true", help="print summary.json to stdout (the rest goes to stderr)")

    rep = sub.add_parser("report", help="leaderboard of one or more run folders")
    rep.add_argument("runs", nargs="+", type=Path, metavar="OUT_DIR",
                     help="run folders (run --out), or a folder of them; one without a summary.json is "
                          "passed over with a note")
    rep.add_argument("--markdown", type=Path, metavar="FILE", help="also write the leaderboard as Markdown")
    rep.add_argument("--html", type=Path, metavar="FILE",
                     help="also write it as one self-contained HTML page (heatmap, charts with error bars)")
    rep.add_argument("--published", action="store_true",
                     help="add each benchmark's published leaderboard rows (RMB's paper; JudgeBench's official "
                          "outputs)")
    rep.add_argument("--json", action="store_true", help="print the leaderboard as one JSON object instead")

    view = sub.add_parser("view", help="browse the records of runs in a local web page (read-only)",
                          description="A read-only page on 127.0.0.1: every judged record with its conversation, "
                                      "answers, the prompt the judge saw, its raw output and verdicts; filters, "
                                      "search, and where two runs disagree. Sends no request, writes no cache.")
    view.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                      help="run folders (run --out or jury --out) to browse; two or more side by side")
    view.add_argument("--port", type=number(int, 0, 65535), default=VIEW_PORT,
                      help=f"port on 127.0.0.1 (default {VIEW_PORT}; 0: any free port)")
    view.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    view.add_argument("--data", type=Path, help="the data folder, if it moved since the runs (default: as their "
                                                "manifest.json says)")

    cache_flag = Parser(add_help=False)
    cache_flag.add_argument("--cache", type=Path, default=Path("cache"),
                            help="cache folder or .sqlite3 file (default ./cache/)")
    cache = sub.add_parser("cache", help="inspect and manage the response cache")
    cache_sub = cache.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")
    stats = cache_sub.add_parser("stats", parents=[cache_flag], help="rows per provider, model and endpoint; last runs")
    stats.add_argument("--json", action="store_true", help="print JSON")
    prune = cache_sub.add_parser("prune", parents=[cache_flag],
                                 help="delete rows of a model, from an endpoint and/or older ones")
    prune.add_argument("--model", help="only this model")
    prune.add_argument("--endpoint", metavar="URL",
                       help="only answers and rewards from this endpoint (as `cache stats` shows it)")
    prune.add_argument("--older-than", type=number(float, 0), metavar="DAYS", help="rows older than DAYS")
    prune.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    export = cache_sub.add_parser("export", parents=[cache_flag], help="every row as JSON lines")
    export.add_argument("--output", type=Path, help="JSONL file (default, or -: stdout)")
    batches = cache_sub.add_parser("batches", parents=[cache_flag],
                                   help="provider batches not yet collected; --forget one")
    batches.add_argument("--forget", metavar="BATCH_ID",
                         help="stop waiting for this batch: its answers are not collected and the next run "
                              "sends its requests again")
    batches.add_argument("--json", action="store_true", help="print JSON")

    if wanted("data"):
        data_flag = Parser(add_help=False)
        benchmark_flag(data_flag)
        data_flag.add_argument("--data", type=Path, help="dataset folder (default: the benchmark's variable, e.g. "
                                                         "$RMB_DATA, or the user cache folder)")
        data = sub.add_parser("data", help="fetch, describe or check a benchmark's dataset")
        data_sub = data.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")
        fetch = data_sub.add_parser("fetch", parents=[data_flag], help="download the official files and verify them")
        fetch.add_argument("--base-url", help="mirror to download from instead of GitHub")
        fetch.add_argument("--revision", metavar="SHA",
                           help="a hub dataset's commit to download (default: the folder's lock file's, else the "
                                "manifest's, else the commit the hub's main branch is at, locked on first fetch)")
        fetch.add_argument("--only", action="append", metavar="GLOB",
                           help="only files matching this glob, e.g. 'BoN_set/*' (repeatable)")
        info = data_sub.add_parser("info", parents=[data_flag], help="records per set, section and scenario")
        info.add_argument("--json", action="store_true", help="print one JSON object")
        data_sub.add_parser("validate", parents=[data_flag], help="check every file parses; list missing files")
    else:
        sub.add_parser("data", help="fetch, describe or check a benchmark's dataset")

    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the process's own command: it ends when this returns
        try:
            return main(sys.argv[1:])
        finally:
            gc.freeze()  # the interpreter's collection at exit skips what is left (0.3-0.8 s)
    command = next((word for word in argv if not word.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    try:
        return COMMANDS[args.command](args, argv)
    except RmbJudgeError as exc:
        if os.environ.get("RMB_JUDGE_DEBUG"):  # the chained cause, for a bug report
            traceback.print_exception(exc)
        print(f"rmb-judge: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rmb-judge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader went away (`| head`): what was written stays written
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (so the flush at exit is quiet)
        return EXIT_BROKEN_PIPE


def check_flags_apply(judge: JudgeSpec, benchmark: Benchmark, argv: list[str]) -> None:
    """A flag the judge kind ignores would mislead: name it instead."""
    from .judges import kind_flags

    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    takes = judge.kind.takes | ({"--order"} if benchmark.scalar_orders else set())
    if wrong := sorted(given & (kind_flags() - takes)):
        raise UsageError(f"{', '.join(wrong)}: not used by {judge.kind.title} such as {judge.spec}")


def given_fields(cls: type, args: argparse.Namespace, **named: object) -> dict[str, object]:
    """The keywords of dataclass `cls` that the command line gives (its defaults are cls's)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return values | named


def run_config(args: argparse.Namespace, argv: list[str]) -> RunConfig:
    from .config import LocalOptions, RunConfig, Task
    from .endpoints import problem
    from .judges import parse_spec
    from .providers import registry
    from .retry import redact

    benchmark = benchmarks.get(args.benchmark)
    judge = parse_spec(args.judge)
    check_flags_apply(judge, benchmark, argv)
    if args.batch and not judge.provider_class.has_batch_api:
        with_batches = ", ".join(f"{name}:" for name, cls in registry().items() if cls.has_batch_api)
        raise UsageError(f"--batch: {judge.spec} has no batch API ({with_batches} judges do)")
    if args.order is not None and args.order not in benchmark.orders:
        raise UsageError(f"--order {args.order}: benchmark {benchmark.name} is judged in "
                         f"{' or '.join(benchmark.orders)} order (default {benchmark.default_order})")
    temperature = None if judge.scalar else sampling_temperature(judge, args.temperature, args.samples)
    base_urls, equivalent = (
        [u.strip() for value in given for u in value.split(",") if u.strip()]
        for given in (args.base_url, args.equivalent_endpoint)
    )
    for flag, urls in (("--base-url", base_urls), ("--equivalent-endpoint", equivalent)):
        for url in urls:
            if reason := problem(url):
                raise UsageError(f"{flag} {redact(url)}: {reason}")
    options = {o.dest: getattr(args, o.dest) for b in benchmarks.every() for o in b.options
               if getattr(args, o.dest, None) is not None}
    selection = records.Selection(sets=args.sets, sections=args.sections, scenarios=args.scenarios,
                                  limit=args.limit, sample=args.sample, seed=args.seed, options=options)
    benchmark.check_selection(selection)
    task = Task(
        judge=judge,
        data=args.data,
        selection=selection,
        benchmark=benchmark.name,
        template=args.template,
        order=args.order,
        samples=args.samples,
        temperature=temperature,
        max_tokens=args.max_tokens,
        precision=args.precision,
        verdict_probs=args.verdict_probs,
        local=LocalOptions(
            max_length=args.max_length, batch_tokens=args.batch_tokens,
            devices=tuple(args.devices.split(",")) if args.devices else None,
            trust_remote_code=args.trust_remote_code, reward_field=args.reward_field,
            revision=args.revision, tokenizer=args.tokenizer,
        ),
    )
    execution = Execution(**given_fields(  # type: ignore[arg-type]
        Execution, args,
        out=getattr(args, "out", None) or Path("."),
        engine=EngineConfig(**given_fields(EngineConfig, args)),  # type: ignore[arg-type]
        base_urls=tuple(base_urls),
        equivalent_endpoints=tuple(equivalent),
        live=not getattr(args, "no_progress", True) and sys.stderr.isatty(),
        confirm_above=None if getattr(args, "yes", True) else args.confirm_above,
        argv=("rmb-judge", *argv),
    ))
    return RunConfig(task, execution)


def sampling_temperature(judge: JudgeSpec, asked: float | None, samples: int) -> float | None:
    """The temperature sent (and keyed in the cache). A provider that accepts none (the
    Anthropic Messages API, version 2026-10-21) always samples at its default, so there is
    nothing to set and nothing to key on. A model that takes none (OpenAI's reasoning models)
    refuses --temperature; its requests stay keyed on the default, as their cached answers are."""
    if asked is not None and (why := judge.provider_class.no_temperature(judge.model)):
        raise UsageError(f"--temperature: {why}; the model samples at its default (drop the flag)")
    if not judge.provider_class.accepts_temperature:
        return None
    if asked is None:
        return 1.0 if samples > 1 else 0.0
    if samples > 1 and asked == 0:
        raise UsageError("--samples > 1 needs --temperature > 0 (at 0 every sample repeats one answer)")
    return asked


STOPPED = {  # stopped_reason -> (exit status, what to tell the user)
    "budget": (EXIT_BUDGET, "stopped before the next request could pass --max-cost ${max_cost:g} (spent "
               "${spent:.4f}); partial summary written (\"complete\": false). Each run may spend up to "
               "--max-cost: rerunning continues from the cache and pays only for what is missing"),
    "interrupted": (EXIT_INTERRUPTED, "interrupted: partial summary written; rerun to continue from the cache"),
    "wait": (EXIT_INCOMPLETE, "stopped: {detail}; partial summary written"),
    "cache": (EXIT_INCOMPLETE, "stopped: {detail}; partial summary written"),
    "error": (EXIT_INCOMPLETE, "stopped by an error; partial summary written"),
    "unreadable": (EXIT_SUSPECT, "stopped early: {detail}; partial summary written"),
}
EARLY_SHOWN = 2  # raw answers shown when the first answers stopped a run (they all look alike)


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from . import report
    from .display import PipeConsole as Console
    from .report.behaviour import lines
    from .session import run

    config = run_config(args, argv)
    result = run(config)
    human = Console(stderr=True) if args.json else Console()
    out = config.execution.out
    runs = report.load_runs([out])
    report.render_terminal(runs, human)
    for line in lines(runs[0]):
        human.print(line, highlight=False, markup=False)
    print(f"wrote {out / 'summary.json'} and {out / 'samples.jsonl'}",
          file=sys.stderr if args.json else sys.stdout)
    if sampling := result.summary.precision:
        print(f"rmb-judge: --precision {sampling.target:g}: " + (
            f"reached ±{sampling.half_width:.4f}" if sampling.reached
            else "not reached" + (f" (±{sampling.half_width:.4f})" if sampling.half_width is not None else "")
        ) + f" on {sampling.records:,} of {sampling.population:,} records in {sampling.rounds} rounds, "
            f"{sampling.requests_sample:,} of the {sampling.requests_full:,} requests the whole selection needs",
            file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary.to_json(), indent=2, ensure_ascii=False))
    if result.stopped_reason in STOPPED:
        if result.stopped_reason == "unreadable":
            show_unreadable(result.unreadable[:EARLY_SHOWN])
        code, message = STOPPED[result.stopped_reason]
        usage = result.summary.usage
        spent = (usage.cost_usd or 0.0) + usage.unconfirmed_cost_usd
        said = message.format(detail=result.detail, max_cost=config.execution.engine.max_cost, spent=spent)
        print(f"rmb-judge: {said}", file=sys.stderr)
        return code
    if not result.complete:
        print("rmb-judge: incomplete: some comparisons failed after all retries; rerun the same "
              "command to retry them", file=sys.stderr)
        return EXIT_INCOMPLETE
    if result.suspect:
        show_unreadable(result.unreadable)
        print(f"rmb-judge: suspect run (see \"warnings\" in {out / 'summary.json'})", file=sys.stderr)
        return EXIT_SUSPECT
    return 0


def show_unreadable(raws: list[str]) -> None:
    for raw in raws:
        shown = " ".join(str(raw).split())
        print(f"rmb-judge: unreadable judge answer: {shown[:240]}{'…' if len(shown) > 240 else ''}", file=sys.stderr)


def cmd_estimate(args: argparse.Namespace, argv: list[str]) -> int:
    from .display import PipeConsole as Console
    from .estimate import estimate

    result = estimate(run_config(args, argv))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        from .estimate import render

        render(result, Console())
    return 0


def cmd_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from .compare import compare, read_run, render

    result = compare(read_run(args.run_a), read_run(args.run_b), measures=True)
    if result.overall is None:
        raise UsageError(f"{args.run_a} and {args.run_b} share no scored records (matched by scenario, uid "
                         f"and data file; only A: {result.only_a:,}, only B: {result.only_b:,}): nothing to compare")
    print(json.dumps(result.to_json(), indent=2, ensure_ascii=False) if args.json else render(result))
    return 0


def cmd_jury(args: argparse.Namespace, argv: list[str]) -> int:
    from . import report
    from .display import PipeConsole as Console
    from .jury import build
    from .report.behaviour import lines

    summary = build(args.runs, args.out, args.rule, args.data, args.replace, argv)
    human = Console(stderr=True) if args.json else Console()
    runs = report.load_runs([args.out, *args.runs])
    report.render_terminal(runs, human)
    for line in lines(runs[0]):
        human.print(line, highlight=False, markup=False)
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'samples.jsonl'}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
    if not summary.complete:
        print("rmb-judge: incomplete: a member run is incomplete, so the jury covers only the records every "
              "member scored; finish the member runs and build the jury again", file=sys.stderr)
        return EXIT_INCOMPLETE
    if summary.suspect:
        print(f"rmb-judge: suspect jury (see \"warnings\" in {args.out / 'summary.json'})", file=sys.stderr)
        return EXIT_SUSPECT
    return 0


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from . import report
    from .display import PipeConsole as Console
    from .report.behaviour import lines

    folders, notes = report.find_runs(args.runs)
    for note in notes:
        print(f"rmb-judge: note: {note}", file=sys.stderr)
    runs = report.load_runs(folders)
    written = []
    for path, render in ((args.markdown, report.render_markdown), (args.html, report.render_html)):
        if path:  # before stdout, which may close early (`| head`)
            try:
                path.write_text(render(runs, published=args.published), encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
            written.append(path)
    if args.json:
        print(report.render_json(runs, published=args.published))
    else:
        console = Console()
        report.render_terminal(runs, console, published=args.published)
        for run in runs:
            if told := lines(run):
                console.print(f"{run.judge} · {run.label}", highlight=False, markup=False)
                for line in told:
                    console.print(f"  {line}", highlight=False, markup=False)
    for path in written:
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_view(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from .explorer.index import read_runs
    from .explorer.server import serve

    runs = read_runs(args.runs)
    try:
        asyncio.run(serve(runs, args.data, args.port, open_browser=not args.no_browser))
    except KeyboardInterrupt:  # before the signal handlers are set
        pass
    return 0


def cmd_cache(args: argparse.Namespace, argv: list[str]) -> int:
    from .cache import Cache
    from .display import PipeConsole as Console
    from .endpoints import normalize

    if args.action == "prune" and not args.model and not args.endpoint and args.older_than is None:
        raise UsageError("cache prune: give --model NAME, --endpoint URL and/or --older-than DAYS")
    cache = Cache(args.cache, create=False)
    try:
        if args.action == "stats":
            stats = cache.stats()
            if args.json:
                print(json.dumps(stats, indent=2))
            else:
                render_cache_stats(stats, Console())
        elif args.action == "prune":
            endpoint = args.endpoint and normalize(args.endpoint)
            removed = cache.prune(model=args.model, older_than_days=args.older_than, dry_run=args.dry_run,
                                  endpoint=endpoint)
            verb = "would remove" if args.dry_run else "removed"
            print(f"{verb} {removed} rows from {cache.path}")
        elif args.action == "batches":
            cache_batches(cache, args)
        else:
            to_file = args.output is not None and str(args.output) != "-"
            out = args.output.open("w", encoding="utf-8") if to_file else sys.stdout
            n = 0
            for row in cache.export():
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            if to_file:
                out.close()
                print(f"exported {n} rows to {args.output}")
    finally:
        cache.close()
    return 0


def cache_batches(cache: Cache, args: argparse.Namespace) -> None:
    """`cache batches`: list the pending batches, or forget one (saying what is lost)."""
    if args.forget:
        entry = cache.forget_batch(args.forget)
        if entry is None:
            raise UsageError(f"cache batches --forget: no pending batch {args.forget} in {cache.path} "
                             "(`rmb-judge cache batches` lists them)")
        print(f"forgot {entry.describe()}: its answers will not be collected (if the provider runs it, they "
              f"are paid for all the same), and the next run sends its requests again")
        return
    pending = cache.pending_batches()
    now = time.time()
    if args.json:
        print(json.dumps([
            {"id": b.id, "provider": b.provider, "model": b.model, "endpoint": b.endpoint, "requests": len(b.items),
             "age_seconds": round(now - b.created_at, 1), "state": b.state} for b in pending
        ], indent=2))
        return
    if not pending:
        print(f"no pending batches in {cache.path}")
        return
    print(f"{len(pending)} pending batches in {cache.path} (rerun their judge to collect them):")
    for b in pending:
        print(f"  {b.describe()}: {b.state}")


def render_cache_stats(stats: dict, console: Console) -> None:
    from rich.table import Table

    mode = " (read-only)" if stats.get("read_only") else ""
    console.print(f"cache {stats['path']}{mode}: {stats['size_bytes'] / 1e6:.1f} MB")
    table = Table(title="responses")
    for col in ("provider", "model", "endpoint", "template", "rows", "input tokens", "output tokens"):
        table.add_column(col, overflow="fold")
    for r in stats["responses"]:
        table.add_row(r["provider"], r["model"], r["endpoint"], r["template"] or "-", str(r["rows"]),
                      f"{r['input_tokens']:,}", f"{r['output_tokens']:,}")
    console.print(table)
    if stats["rewards"]:
        rewards = Table(title="rewards")
        for col in ("model", "endpoint", "rows"):
            rewards.add_column(col, overflow="fold")
        for r in stats["rewards"]:
            rewards.add_row(r["model"], r["endpoint"] or "(not recorded)", str(r["rows"]))
        console.print(rewards)
    runs = Table(title="last runs")
    for col in ("judge", "lookups", "hits", "hit rate", "requests"):
        runs.add_column(col, overflow="fold")
    for r in stats["runs"]:
        rate = "-" if r["hit_rate"] is None else f"{100 * r['hit_rate']:.1f}%"
        runs.add_row(r["judge"], str(r["lookups"]), str(r["hits"]), rate, str(r["requests"]))
    console.print(runs)


def cmd_data(args: argparse.Namespace, argv: list[str]) -> int:
    benchmark = benchmarks.get(args.benchmark)
    root = args.data or benchmark.default_data_dir()
    if args.action == "fetch":
        from .fetch import fetch_sync

        result = fetch_sync(benchmark, root, base_url=args.base_url, only=args.only, revision=args.revision)
        print(f"{result.dest}: {len(result.downloaded)} files downloaded, {len(result.skipped)} "
              f"already present and verified; {result.records} records")
        return 0
    from .display import PipeConsole as Console

    dataset = benchmark.load_every(root)
    manifest = benchmark.manifest()
    root = dataset.root  # (the RMB_dataset folder inside the one given, if so)
    missing = manifest.missing(root)
    upstream = len(manifest.files)
    if args.action == "validate":
        print(f"{root}: OK: {upstream - len(missing)} of {upstream} {benchmark.files_noun}, "
              f"{len(dataset.records)} records, all well-formed")
    elif args.json:
        print(json.dumps(data_info(benchmark, dataset, missing), indent=2, ensure_ascii=False))
        return 0
    else:
        render_data_info(benchmark, data_info(benchmark, dataset, missing), Console())
    if missing:
        print(f"missing ({len(missing)}; `rmb-judge data fetch` downloads them): {', '.join(missing)}")
    return 0


def data_info(benchmark: Benchmark, dataset: records.Dataset, missing: list[str]) -> dict:
    """Records and judgments per section (what a judge with the benchmark's default template
    is asked of each record: RMB's pairs, RM-Bench's nine), records per scenario, and the
    files a copy lacks."""
    from . import templates

    kind = templates.load(benchmark.default_template).kind
    sections: dict[str, Counter] = {}
    scenarios: Counter = Counter()
    for r in dataset.records:
        counts = sections.setdefault(r.section, Counter())
        counts["records"] += 1
        counts["comparisons"] += len(benchmark.judgments(r, kind))
        counts["scenarios"] += r.subset not in scenarios
        scenarios[r.subset] += 1
    return {
        "root": str(dataset.root),
        "files_read": len(dataset.files),
        "upstream_files": len(benchmark.manifest().files),
        "upstream": benchmark.scenarios_note,
        "sections": {key: {"scenarios": c["scenarios"], "records": c["records"], "comparisons": c["comparisons"]}
                     for key, c in sorted(sections.items())},
        "scenarios": dict(sorted(scenarios.items())),
        "missing": missing,
    }


def render_data_info(benchmark: Benchmark, info: dict, console: Console) -> None:
    from rich.table import Table

    console.print(f"{info['root']}: {info['files_read']} {benchmark.files_noun} read (upstream: "
                  f"{info['upstream_files']} files, {info['upstream']})")
    table = Table(title="records per set and section")
    for col in ("section", "scenarios", "records", "comparisons"):
        table.add_column(col)
    for key, counts in info["sections"].items():
        table.add_row(key, str(counts["scenarios"]), str(counts["records"]), str(counts["comparisons"]))
    console.print(table)
    detail = Table(title="records per scenario")
    detail.add_column(benchmark.subset_field, overflow="fold")
    detail.add_column("records", justify="right")
    for path, count in info["scenarios"].items():
        detail.add_row(path, str(count))
    console.print(detail)


COMMANDS = {
    "run": cmd_run,
    "estimate": cmd_estimate,
    "compare": cmd_compare,
    "jury": cmd_jury,
    "report": cmd_report,
    "view": cmd_view,
    "cache": cmd_cache,
    "data": cmd_data,
}


if __name__ == "__main__":
    sys.exit(main())
