"""Rate limits and adaptive concurrency for the engine.

`TokenBucket`: a per-minute budget (requests or tokens) refilled continuously. It starts
with a single unit rather than a full minute, and its clock starts at the first request
(not while the cache is being read), so the achieved rate matches the limit from the first
second instead of bursting. Token costs are estimates; `refund` corrects them from the
usage the provider reports (a negative refund is debt later requests wait out).

`SlidingWindow`: at most N requests in any window of time. A bucket alone lets a stall
(a pause, a slow cache) be caught up with a second's worth at once, which can put a few
more than R requests into some minute; `RequestRate` (what --rpm R uses) paces with a
bucket and caps with a window, so no 60 s window ever sees more than R.

`AdaptiveConcurrency`: at most `limit` requests in flight. A 429 halves the limit (or
what is in flight, if less; at most once per `cooldown` seconds, so one burst of 429s is
one decrease) and pauses new starts until the server's retry-after has passed; every
`limit` successes then add one back.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class TokenBucket:
    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)  # one second's worth
        self.level = 1.0
        self.updated: float | None = None  # the clock starts at the first acquire
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        if self.updated is not None:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:  # first come, first served
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need - 1e-9:  # (float dust must not cost another sleep)
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def refund(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class SlidingWindow:
    """At most `limit` acquisitions in any `window` seconds: the times of the last `limit`
    are kept, and the next one waits until the oldest is a window old."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self.times: deque[float] = deque(maxlen=limit)
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            if len(self.times) == self.limit:
                wait = self.times[0] + self.window - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            self.times.append(time.monotonic())


# Added to the 60 s window on our side: a request reaches the server a little after the
# limiter lets it go, and not always equally late (the event loop, the network), so two
# requests exactly 60 s apart here could land inside one 60 s window there. It costs 0.8%
# of the rate.
WINDOW_MARGIN = 0.5


class RequestRate:
    """--rpm R: requests paced at R a minute, and never more than R in any 60 s window."""

    def __init__(self, per_minute: float):
        self.bucket = TokenBucket(per_minute)
        # (below one a minute: one request per 60/R seconds)
        limit, window = (int(per_minute), 60.0) if per_minute >= 1 else (1, 60.0 / per_minute)
        self.window = SlidingWindow(limit, window + WINDOW_MARGIN)

    async def acquire(self) -> None:
        await self.bucket.acquire(1)
        await self.window.acquire()


class AdaptiveConcurrency:
    def __init__(self, maximum: int, cooldown: float = 1.0):
        self.maximum = maximum
        self.limit = float(maximum)
        self.cooldown = cooldown
        self.in_flight = 0
        self.paused_until = 0.0
        self.last_decrease = -1e9
        self.decreases = 0
        self._successes = 0
        self.ceiling: int | None = None  # a cap on the limit while set (see set_ceiling)
        self._changed = asyncio.Condition()

    def _allowed(self) -> int:
        return int(self.limit) if self.ceiling is None else min(int(self.limit), self.ceiling)

    async def set_ceiling(self, ceiling: int | None) -> None:
        """Cap the requests in flight at `ceiling` (None: lift the cap), whatever the limit."""
        async with self._changed:
            self.ceiling = ceiling
            self._changed.notify_all()

    def try_acquire(self) -> bool:
        """Take a slot without waiting when one is free: the common case, which then costs
        no task and no lock (the loop runs one coroutine at a time, so the check is atomic)."""
        if self.in_flight < self._allowed() and self.paused_until <= time.monotonic():
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        async with self._changed:
            while True:
                wait = self.paused_until - time.monotonic()
                if wait <= 0 and self.in_flight < self._allowed():
                    break
                try:  # (no wait_for: its inner task could outlive a cancel and block the exit)
                    async with asyncio.timeout(wait if wait > 0 else None):
                        await self._changed.wait()
                except TimeoutError:
                    pass
            self.in_flight += 1

    async def release(self) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    async def success(self) -> None:
        async with self._changed:
            self._successes += 1
            if self.limit < self.maximum and self._successes >= int(self.limit):
                self._successes = 0
                self.limit = min(self.maximum, self.limit + 1)
                self._changed.notify_all()

    async def rate_limited(self, retry_after: float | None) -> None:
        """A 429: slow the whole run down, then let it recover gradually."""
        async with self._changed:
            now = time.monotonic()
            if retry_after:
                self.paused_until = max(self.paused_until, now + retry_after)
            if now - self.last_decrease >= self.cooldown:
                self.last_decrease = now
                self.decreases += 1
                self.limit = max(1.0, min(self.limit, self.in_flight + 1) / 2)
                self._successes = 0
