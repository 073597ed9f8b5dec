"""The page and its JSON, served on 127.0.0.1 by aiohttp.

The server listens (and the browser opens) as soon as the run folders are read; the records
are indexed meanwhile, and the page's first requests wait for the index, so opening a browser
and reading ~100 MB of data files happen at once. The search texts are made after that.

Routes: `/` and `/r/<category_path>/<uid>` (a record's stable URL; filters ride in the query
string) give the page, `/static/...` its script and style sheet, and the page asks
`/api/meta` (runs, notes, filter values), `/api/records` (one page of the filtered list) and
`/api/record?id=...` (one record, with its prompts rendered) and `/api/reliability.svg?run=N`
(a run's reliability diagram, drawn as the report draws it). Only requests naming this
server as their host are answered, so a web page elsewhere cannot read the records by
pointing a domain name at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import signal
import sys
import webbrowser
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

from ..errors import UsageError
from ..report.behaviour import Forecaster
from ..report.html import PALETTE, reliability_svg
from .index import PAGE, Index, Query, RunInfo, index

HOST = "127.0.0.1"
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
RUN_COLOURS = 8  # the page's run colours: the report's first eight (app.css --r0 to --r7)
_json = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


def _static(name: str) -> str:
    return (resources.files("rmb_judge.explorer") / "static" / name).read_text(encoding="utf-8")


def make_app(ready: Callable[[], Awaitable[Index]]) -> web.Application:
    """The routes; every API answer waits for the index (`ready()`)."""
    page = _static("index.html")
    files = {name: _static(name) for name in STATIC}

    @web.middleware
    async def same_host(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                        ) -> web.StreamResponse:
        host = request.host.rpartition(":")[0] if ":" in request.host else request.host
        if host not in (HOST, "localhost"):
            raise web.HTTPForbidden(text="rmb-judge view answers only requests to 127.0.0.1 or localhost\n")
        response = await handler(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def index_page(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(text=files[name], content_type=STATIC[name])

    async def meta(request: web.Request) -> web.Response:
        return web.json_response((await ready()).meta(), dumps=_json)

    async def records(request: web.Request) -> web.Response:
        index = await ready()
        q = request.query
        try:
            run = int(q.get("run", 0))
            offset, limit = int(q.get("offset", 0)), int(q.get("limit", PAGE))
        except ValueError:
            raise web.HTTPBadRequest(text="run, offset and limit are whole numbers\n") from None
        if not 0 <= run < len(index.runs):
            raise web.HTTPBadRequest(text=f"run: there are {len(index.runs)} runs\n")
        query = Query(run=run, **{name: q.get(name, "") for name in
                                  ("section", "scenario", "outcome", "position", "turns", "model", "text", "sort")},
                      disagree=q.get("disagree", "") in ("1", "true"))
        return web.json_response(index.page(query, offset, limit), dumps=_json)

    async def reliability(request: web.Request) -> web.Response:
        index = await ready()
        number = request.query.get("run", "")
        info = index.runs[int(number)] if number.isdigit() and int(number) < len(index.runs) else None
        svg = None if info is None else reliability_svg([
            Forecaster(info.number + 1, f"{info.number + 1} · {info.run.judge}", PALETTE[info.number % RUN_COLOURS],
                       info.run.calibration)])
        if svg is None:
            raise web.HTTPNotFound(text="no such run with verdict probabilities\n")
        return web.Response(text=svg, content_type="image/svg+xml")

    async def record(request: web.Request) -> web.Response:
        found = (await ready()).detail(request.query.get("id", ""))
        if found is None:
            raise web.HTTPNotFound(text="no such record in these runs\n")
        return web.json_response(found, dumps=_json)

    app = web.Application(middlewares=[same_host])
    app.add_routes([
        web.get("/", index_page),
        web.get("/r/{tail:.*}", index_page),
        web.get("/static/{name}", static),
        web.get("/api/meta", meta),
        web.get("/api/records", records),
        web.get("/api/record", record),
        web.get("/api/reliability.svg", reliability),
    ])
    return app


async def serve(runs: list[RunInfo], data: Path | None, port: int, open_browser: bool) -> None:
    """Serve until Ctrl-C or SIGTERM; the URL goes to stdout as soon as the page can be asked for."""
    built = asyncio.ensure_future(asyncio.to_thread(index, runs, data))
    # each request waits on its own shield: a request given up on must not cancel the index
    runner = web.AppRunner(make_app(lambda: asyncio.shield(built)), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        if error.errno == errno.EADDRINUSE:
            raise UsageError(f"--port {port}: already in use (another rmb-judge view?); give another --port, "
                             "or --port 0 for any free one") from None
        raise UsageError(f"--port {port}: cannot listen on {HOST} ({error.strerror})") from None
    url = f"http://{HOST}:{runner.addresses[0][1]}/"
    judged = len({key for run in runs for key in run.samples})
    print(f"rmb-judge view: {url} ({judged:,} records of {len(runs)} run{'s' * (len(runs) > 1)}; Ctrl-C stops it)",
          flush=True)
    if open_browser:
        await asyncio.to_thread(webbrowser.open, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)

    async def prepare() -> None:
        await asyncio.to_thread((await built).search_texts)

    def failed(task: asyncio.Future) -> None:  # a bug in indexing: stop, and show its traceback
        if not task.cancelled() and task.exception() is not None:
            stop.set()

    preparing = asyncio.ensure_future(prepare())
    preparing.add_done_callback(failed)
    try:
        await stop.wait()
        if preparing.done() and not preparing.cancelled() and (bug := preparing.exception()) is not None:
            raise bug
    finally:
        preparing.cancel()
        await runner.cleanup()
        print("rmb-judge view: stopped", file=sys.stderr)
