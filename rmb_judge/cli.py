"""The `rmb-judge` command line: run, estimate, report, cache, data."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import records
from .engine import EngineConfig
from .errors import RmbJudgeError, UsageError
from .fetch import load_manifest
from .judges import parse_spec

EXIT_BUDGET = 5
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming it, not the whole usage text, and no
    abbreviated flags (`--max-len` would slip past the check that a flag applies)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


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


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def selection_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("data selection")
    g.add_argument("--data", type=Path, help="RMB_dataset folder (default: $RMB_DATA, else the folder `data fetch` fills)")
    g.add_argument("--sets", type=csv_list(tuple(records.SETS)), default=list(records.SETS),
                   help="pairwise,bon (default both)")
    g.add_argument("--sections", type=csv_list(tuple(records.SECTIONS)),
                   default=list(records.SECTIONS), help="helpfulness,harmlessness (default both)")
    g.add_argument("--scenarios", action="append", default=[], metavar="GLOB",
                   help="fnmatch against category_path, e.g. '*Chat*' (repeatable)")
    g.add_argument("--limit", type=positive_int, help="first N records of each scenario file")
    g.add_argument("--sample", type=float, metavar="FRACTION", help="a seeded random fraction of records")
    g.add_argument("--seed", type=int, default=0, help="seed for --sample and --order random (default 0)")
    return p


def judge_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("judge")
    g.add_argument("--judge", required=True, metavar="SPEC",
                   help="openai:MODEL, anthropic:MODEL, hf:PATH_OR_ID or mock")
    g.add_argument("--template", default="rmb", help="prompt template name in prompts/ or a .toml path (default rmb)")
    g.add_argument("--order", default="random", choices=("random", "fixed", "both"),
                   help="answer order shown to the judge (default random, seeded)")
    g.add_argument("--samples", type=positive_int, default=1, metavar="K",
                   help="majority vote over K samples; raising K later pays only for new samples "
                        "if --temperature is unchanged")
    g.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default 0, or 1 with --samples > 1; "
                        "not accepted by anthropic: judges)")
    g.add_argument("--max-tokens", type=positive_int, default=2048, help="judge answer length cap (default 2048)")
    g.add_argument("--base-url", action="append", default=[], metavar="URL",
                   help="API base URL; repeat (or comma-separate) to spread requests over replicas")
    g.add_argument("--batch", action="store_true", help="use the provider's batch API (half price, slower)")
    g.add_argument("--cache", type=Path, default=Path("cache"), help="cache folder (default ./cache/)")
    g.add_argument("--offline", action="store_true", help="answer only from the cache; a miss is an error")
    h = p.add_argument_group("local reward models (hf:)")
    h.add_argument("--max-length", type=positive_int, help="tokens per scored text, cut from the left (default: the model's limit)")
    h.add_argument("--batch-tokens", type=positive_int, default=16384, help="padded tokens per batch (default 16384)")
    h.add_argument("--devices", help="comma-separated devices, e.g. cuda:0,cuda:1 (default: all visible GPUs, else CPU)")
    h.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (e.g. ArmoRM)")
    h.add_argument("--reward-field", help="output attribute holding the reward (e.g. score for ArmoRM)")
    h.add_argument("--revision", help="model revision (hub models)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rmb-judge", description="Evaluate LLM judges and reward models on the RMB benchmark."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[selection_flags(), judge_flags()], help="judge RMB and score it")
    run.add_argument("--out", type=Path, required=True, help="run folder for summary.json and samples.jsonl")
    e = run.add_argument_group("engine")
    e.add_argument("--concurrency", type=positive_int, default=32, help="requests in flight at most (default 32)")
    e.add_argument("--rpm", type=positive_float, help="requests per minute limit")
    e.add_argument("--tpm", type=positive_float, help="tokens per minute limit (estimated, corrected from usage)")
    e.add_argument("--max-retries", type=int, default=8, help="retries per request after 5xx, timeouts and broken answers (default 8); 429s wait as the server asks, up to 100 times")
    e.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per request (default 120)")
    e.add_argument("--max-cost", type=float, metavar="USD", help="stop starting requests before spend passes this")
    e.add_argument("--poll-interval", type=positive_float, default=30.0,
                   help="--batch: seconds between batch status checks (default 30)")
    e.add_argument("--no-progress", action="store_true", help="plain periodic lines instead of the live view")
    e.add_argument("--progress-interval", type=positive_float, default=10.0, help="seconds between plain lines")

    est = sub.add_parser("estimate", parents=[selection_flags(), judge_flags()],
                         help="requests, tokens and cost a run would need")
    est.add_argument("--json", action="store_true", help="print one JSON object")

    rep = sub.add_parser("report", help="leaderboard of one or more run folders")
    rep.add_argument("runs", nargs="+", type=Path, metavar="OUT_DIR")
    rep.add_argument("--markdown", type=Path, metavar="FILE")
    rep.add_argument("--html", type=Path, metavar="FILE")
    rep.add_argument("--published", action="store_true", help="add the RMB paper's leaderboard rows")

    cache = sub.add_parser("cache", help="inspect and manage the response cache")
    cache.add_argument("action", choices=("stats", "prune", "export"))
    cache.add_argument("--cache", type=Path, default=Path("cache"))
    cache.add_argument("--model", help="prune: only this model")
    cache.add_argument("--older-than", type=float, metavar="DAYS", help="prune: rows older than DAYS")
    cache.add_argument("--output", type=Path, help="export: JSONL file (default stdout)")
    cache.add_argument("--json", action="store_true", help="stats: print JSON")

    data = sub.add_parser("data", help="fetch, describe or check the RMB dataset")
    data.add_argument("action", choices=("fetch", "info", "validate"))
    data.add_argument("--data", type=Path, help="dataset folder (default: $RMB_DATA or the user cache folder)")
    data.add_argument("--base-url", help="fetch: mirror to download from instead of GitHub")
    data.add_argument("--only", action="append", metavar="GLOB",
                      help="fetch: only files matching this glob, e.g. 'BoN_set/*' (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, argv)
    except RmbJudgeError as exc:
        print(f"rmb-judge: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rmb-judge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


GENERATIVE_ONLY = ("--template", "--order", "--samples", "--temperature", "--max-tokens",
                   "--base-url", "--batch", "--concurrency", "--rpm", "--tpm", "--max-retries",
                   "--timeout", "--max-cost", "--poll-interval")
LOCAL_ONLY = ("--max-length", "--batch-tokens", "--devices", "--trust-remote-code",
              "--reward-field", "--revision")


def check_flags_apply(judge, argv: list[str]) -> None:
    """A flag the judge kind ignores would mislead: name it instead."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    wrong = sorted(given & set(GENERATIVE_ONLY if judge.scalar else LOCAL_ONLY))
    if wrong:
        kind = "a local reward model (hf:)" if judge.scalar else "a generative judge"
        raise UsageError(f"{', '.join(wrong)}: not used by {kind} such as {judge.spec}")


def run_config(args: argparse.Namespace, argv: list[str]):
    from .runner import LocalOptions, RunConfig

    if args.sample is not None and not 0 < args.sample <= 1:
        raise UsageError(f"--sample must be a fraction in (0, 1], got {args.sample}")
    judge = parse_spec(args.judge)
    check_flags_apply(judge, argv)
    if args.batch and judge.provider not in ("openai", "anthropic"):
        raise UsageError(f"--batch: {judge.spec} has no batch API (openai: and anthropic: judges do)")
    temperature = None if judge.scalar else sampling_temperature(judge.provider, args.temperature, args.samples)
    base_urls = [u.strip() for value in args.base_url for u in value.split(",") if u.strip()]
    return RunConfig(
        judge=judge,
        data=args.data or records.default_data_dir(),
        out=getattr(args, "out", None) or Path("."),
        selection=records.Selection(
            sets=args.sets, sections=args.sections, scenarios=args.scenarios,
            limit=args.limit, sample=args.sample, seed=args.seed,
        ),
        template=args.template,
        order=args.order,
        samples=args.samples,
        temperature=temperature,
        max_tokens=args.max_tokens,
        engine=EngineConfig(
            concurrency=getattr(args, "concurrency", 32),
            rpm=getattr(args, "rpm", None),
            tpm=getattr(args, "tpm", None),
            max_retries=getattr(args, "max_retries", 8),
            timeout=getattr(args, "timeout", 120.0),
            offline=args.offline,
            max_cost=getattr(args, "max_cost", None),
        ),
        cache=args.cache,
        base_urls=base_urls,
        live=not getattr(args, "no_progress", True) and sys.stdout.isatty(),
        progress_interval=getattr(args, "progress_interval", 10.0),
        batch=args.batch,
        poll_interval=getattr(args, "poll_interval", 30.0),
        local=LocalOptions(
            max_length=args.max_length, batch_tokens=args.batch_tokens,
            devices=args.devices.split(",") if args.devices else None,
            trust_remote_code=args.trust_remote_code, reward_field=args.reward_field,
            revision=args.revision,
        ),
        argv=["rmb-judge", *argv],
    )


def sampling_temperature(provider: str, asked: float | None, samples: int) -> float | None:
    """The temperature sent (and keyed in the cache). Anthropic's Messages API (version
    2026-10-21, the anthropic 2.x default) accepts no temperature: Claude always samples at
    its default, so there is nothing to set and nothing to key on."""
    if provider == "anthropic":
        if asked is not None:
            raise UsageError("--temperature: the Anthropic Messages API no longer accepts a "
                             "temperature; Claude samples at its default (drop the flag)")
        return None
    if asked is None:
        return 1.0 if samples > 1 else 0.0
    if samples > 1 and asked == 0:
        raise UsageError("--samples > 1 needs --temperature > 0 (at 0 every sample repeats one answer)")
    return asked


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from .runner import run

    config = run_config(args, argv)
    if config.judge.simulated:
        print("rmb-judge: judge 'mock' is a SIMULATED offline judge: its scores mean nothing "
              "about any real model", file=sys.stderr)
    result = run(config)
    from . import report

    report.render_terminal(report.load_runs([config.out]), Console())
    print(f"wrote {config.out / 'summary.json'} and {config.out / 'samples.jsonl'}")
    if result.stopped_reason == "budget":
        print(f"rmb-judge: --max-cost {config.engine.max_cost} reached: stopped starting requests; "
              "partial summary written (\"complete\": false). Each run may spend up to --max-cost: "
              "rerunning continues from the cache and pays only for what is missing",
              file=sys.stderr)
        return EXIT_BUDGET
    if result.stopped_reason == "interrupted":
        print("rmb-judge: interrupted: partial summary written; rerun to continue from the cache",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if result.complete else 1


def cmd_estimate(args: argparse.Namespace, argv: list[str]) -> int:
    from .estimate import estimate

    result = estimate(run_config(args, argv))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        from .estimate import render

        render(result, Console())
    return 0


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from . import report

    runs = report.load_runs(args.runs)
    report.render_terminal(runs, Console(), published=args.published)
    if args.markdown:
        args.markdown.write_text(report.render_markdown(runs, published=args.published), encoding="utf-8")
        print(f"wrote {args.markdown}")
    if args.html:
        args.html.write_text(report.render_html(runs, published=args.published), encoding="utf-8")
        print(f"wrote {args.html}")
    return 0


def cmd_cache(args: argparse.Namespace, argv: list[str]) -> int:
    from .cache import Cache

    cache = Cache(args.cache)
    try:
        if args.action == "stats":
            stats = cache.stats()
            if args.json:
                print(json.dumps(stats, indent=2))
            else:
                render_cache_stats(stats, Console())
        elif args.action == "prune":
            if not args.model and args.older_than is None:
                raise UsageError("cache prune: give --model NAME and/or --older-than DAYS")
            removed = cache.prune(model=args.model, older_than_days=args.older_than)
            print(f"removed {removed} rows from {cache.path}")
        else:
            out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
            n = 0
            for row in cache.export():
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            if args.output:
                out.close()
                print(f"exported {n} rows to {args.output}")
    finally:
        cache.close()
    return 0


def render_cache_stats(stats: dict, console: Console) -> None:
    console.print(f"cache {stats['path']}: {stats['size_bytes'] / 1e6:.1f} MB")
    table = Table(title="responses")
    for col in ("provider", "model", "template", "rows", "input tokens", "output tokens"):
        table.add_column(col)
    for r in stats["responses"]:
        table.add_row(r["provider"], r["model"], r["template"] or "-", str(r["rows"]),
                      f"{r['input_tokens']:,}", f"{r['output_tokens']:,}")
    console.print(table)
    if stats["rewards"]:
        rewards = Table(title="local rewards")
        rewards.add_column("model")
        rewards.add_column("rows")
        for r in stats["rewards"]:
            rewards.add_row(r["model"], str(r["rows"]))
        console.print(rewards)
    runs = Table(title="last runs")
    for col in ("judge", "lookups", "hits", "hit rate", "requests"):
        runs.add_column(col)
    for r in stats["runs"]:
        rate = "-" if r["hit_rate"] is None else f"{100 * r['hit_rate']:.1f}%"
        runs.add_row(r["judge"], str(r["lookups"]), str(r["hits"]), rate, str(r["requests"]))
    console.print(runs)


def cmd_data(args: argparse.Namespace, argv: list[str]) -> int:
    root = args.data or records.default_data_dir()
    if args.action == "fetch":
        from .fetch import fetch_sync

        result = fetch_sync(root, base_url=args.base_url, only=args.only)
        print(f"{result.dest}: {len(result.downloaded)} files downloaded, {len(result.skipped)} "
              f"already present and verified; {result.records} records")
        return 0
    dataset = records.load(root)
    if args.action == "validate":
        print(f"{root}: OK: {len(dataset.files)} of {len(load_manifest().files)} scenario files, "
              f"{len(dataset.records)} records, all well-formed")
        return 0
    render_data_info(dataset, Console())
    return 0


def render_data_info(dataset: records.Dataset, console: Console) -> None:
    counts: Counter = Counter()
    comparisons: Counter = Counter()
    scenarios: Counter = Counter()
    section_of: dict[str, str] = {}
    for r in dataset.records:
        counts[r.section_key] += 1
        comparisons[r.section_key] += len(r.others)
        scenarios[r.category_path] += 1
        section_of[r.category_path] = r.section_key
    scenarios_per_section = Counter(section_of.values())
    console.print(f"{dataset.root}: {len(dataset.files)} of {len(load_manifest().files)} scenario "
                  "files found (49 scenarios, each a pairwise and a Best-of-N file upstream)")
    table = Table(title="records per set and section")
    for col in ("section", "scenarios", "records", "comparisons"):
        table.add_column(col)
    for key in sorted(counts):
        table.add_row(key, str(scenarios_per_section[key]), str(counts[key]), str(comparisons[key]))
    console.print(table)
    detail = Table(title="records per scenario")
    detail.add_column("category_path")
    detail.add_column("records", justify="right")
    for path in sorted(scenarios):
        detail.add_row(path, str(scenarios[path]))
    console.print(detail)


COMMANDS = {
    "run": cmd_run,
    "estimate": cmd_estimate,
    "report": cmd_report,
    "cache": cmd_cache,
    "data": cmd_data,
}


if __name__ == "__main__":
    sys.exit(main())
