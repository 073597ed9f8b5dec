"""An aiohttp application served on 127.0.0.1 (a random port) from its own thread: the fake
GitHub and Hugging Face hub that `data fetch` tests download from."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web


@contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """`app` listening until the block ends; yields its base URL, http://127.0.0.1:PORT."""

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def static_site(root: Path, asked: list[str]) -> web.Application:
    """The files under `root`, as raw.githubusercontent.com serves a repository's; each raw path
    asked for is appended to `asked`."""

    @web.middleware
    async def record(request: web.Request, handler):
        asked.append(request.raw_path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_static("/", root)
    return app
