"""Engine benchmarks, each measured side by side in one run (run through bin/bench-engine).

(a) rate limiting: with --rpm R below the server's capacity, the achieved request rate
    (seen by the server) against R, and the number of 429s;
(b) throughput at concurrency 256 against a zero-latency local server (a separate
    process): our engine beside the reference RMB/RewardBench way (synchronous SDK calls
    in a thread pool), as a ratio;
(c) the wall time of a fully cached rerun of every available RMB comparison beside the
    time to just load the dataset.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import openai  # noqa: E402
from fake_api import FakeAPI  # noqa: E402

from rmb_judge.benchmarks import get as benchmark  # noqa: E402
from rmb_judge.cache import Cache  # noqa: E402
from rmb_judge.config import EngineConfig, Execution, RunConfig, Task  # noqa: E402
from rmb_judge.engine import Engine, Job  # noqa: E402
from rmb_judge.judges import parse_spec  # noqa: E402
from rmb_judge.providers.base import ChatRequest  # noqa: E402
from rmb_judge.providers.openai_provider import OpenAIProvider  # noqa: E402
from rmb_judge.session import paused_gc, run  # noqa: E402

DATA = Path(os.environ.get("RMB_TEST_DATA", ROOT.parent / "shared" / "rmb" / "RMB_dataset"))
KEY = "sk-bench"


def jobs(n: int, tag: str) -> list[Job]:
    return [
        Job(f"{tag}-{i}", 0, ChatRequest("gpt-4o-mini", (("user", f"{tag} question {i}"),), 16))
        for i in range(n)
    ]


class Timed:
    """Records when each request is sent (the moment the rate limiter let it go)."""

    def __init__(self, provider):
        self.provider, self.name, self.simulated, self.sent = provider, provider.name, False, []
        self.model, self.endpoints = provider.model, provider.endpoints
        self.prepare, self.classify = provider.prepare, provider.classify

    async def complete(self, request, timeout):
        self.sent.append(time.monotonic())
        return await self.provider.complete(request, timeout)

    async def aclose(self):
        await self.provider.aclose()


def bench_rate(rpm: float, n: int) -> None:
    async def go() -> None:
        async with FakeAPI(capacity_rpm=rpm * 4) as api:
            provider = Timed(OpenAIProvider("gpt-4o-mini", base_url=api.openai_url, api_key=KEY))
            with tempfile.TemporaryDirectory() as tmp:
                engine = Engine(provider, Cache(tmp), EngineConfig(concurrency=64, rpm=rpm))
                await engine.run(jobs(n, "rate"))
            await provider.aclose()
            times = sorted(provider.sent)
            achieved = (len(times) - 1) / (times[-1] - times[0]) * 60
            throttled = engine.stats.rate_limited
            print(f"(a) --rpm {rpm:g}: {n} requests, achieved {achieved:.1f} req/min "
                  f"= {achieved / rpm:.3f} x R; 429s: {throttled}")

    asyncio.run(go())


def start_server_process() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_api.py"), "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    return proc, url


def bench_throughput(n: int, concurrency: int) -> None:
    proc, url = start_server_process()
    try:
        async def ours() -> float:
            provider = OpenAIProvider("gpt-4o-mini", base_url=f"{url}/v1", api_key=KEY)
            with tempfile.TemporaryDirectory() as tmp:
                engine = Engine(provider, Cache(tmp), EngineConfig(concurrency=concurrency))
                start = time.perf_counter()
                await engine.run(jobs(n, "ours"))
                elapsed = time.perf_counter() - start
            await provider.aclose()
            assert engine.stats.failed == 0
            return n / elapsed

        ours_rate = asyncio.run(ours())

        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        def one(i: int) -> str:
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"ref question {i}"}],
                max_tokens=16, temperature=0,
            )
            return reply.choices[0].message.content

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            start = time.perf_counter()
            list(pool.map(one, range(n)))
            ref_rate = n / (time.perf_counter() - start)
        print(f"(b) concurrency {concurrency}, {n} requests: rmb-judge engine {ours_rate:.0f} req/s "
              f"(cache writes included); reference (sync SDK in a thread pool) {ref_rate:.0f} req/s; "
              f"ratio {ours_rate / ref_rate:.2f}x")
    finally:
        proc.terminate()
        proc.wait()


def bench_cached_rerun() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(Task(judge=parse_spec("mock"), data=DATA),
                           Execution(out=Path(tmp) / "out", cache=Path(tmp) / "cache"))
        first = run(config)  # fills the cache with every available comparison
        n = first.summary.data.comparisons_expected
        start = time.perf_counter()
        with paused_gc():  # as the rerun loads it: the two sides measured the same way
            benchmark().load(DATA)
        load = time.perf_counter() - start
        gc.unfreeze()
        start = time.perf_counter()
        again = run(config)
        rerun = time.perf_counter() - start
        assert again.summary.usage.requests == 0
        print(f"(c) {n} comparisons: dataset load {load:.2f} s; fully cached rerun (load, plan, "
              f"cache lookups, scoring, writing OUT/) {rerun:.2f} s; ratio {rerun / load:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    bench_rate(rpm=600, n=60 if args.quick else 300)
    bench_throughput(n=1000 if args.quick else 5000, concurrency=256)
    bench_cached_rerun()


if __name__ == "__main__":
    main()
