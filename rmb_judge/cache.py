"""The response cache: SQLite in WAL mode, one row per request key, sample index and endpoint.

Every response is committed the moment it arrives, so a `kill -9` loses at most the
requests in flight, and several processes can share one cache file. Keys hash only what
determines the answer (provider, model, messages, sampling parameters, template); never
the API key, and never transport settings (concurrency, timeouts, retries). The endpoint
that produced an answer is kept beside it: a run is served only answers from its own
endpoints (or ones the user declared equivalent).

Processes sharing a cache never pay twice for one request: before sending, a process
*claims* the request (a row in `claims` with an expiry it keeps renewing); the others wait
for its answer. A killed process's claims lapse (at once when it ran on this host).

A file that is not an rmb-judge cache, is damaged, or comes from a newer rmb-judge is
refused with one line and left untouched. A read-only cache still serves lookups. When a
write fails (a full disk), the answers that could not be stored go to a side file beside
the cache, which the next run adds to it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import sqlite3
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import CacheError, CacheFull
from .migrations import MIGRATIONS, migrate, pending
from .providers.base import ChatRequest, ChatResponse

FILENAME = "rmb-judge.sqlite3"
CHUNK = 500  # SQLite host-parameter limit is 999 on old builds
_LENGTH = struct.Struct(">Q")  # a field's length prefix in request keys
CLAIM_SECONDS = 60.0  # a claim lapses this long after its owner last renewed it
PATIENCE = 60.0  # seconds a cache locked by another process is waited for
LOCK_STEP = 0.25  # ... in steps this long (SQLite's busy wait), checking in between
OUR_TABLES = {"_migrations", "responses", "rewards", "probes", "runs", "batches", "claims", "sqlite_sequence"}

RESPONSE_COLUMNS = (
    "key, sample, endpoint, text, input_tokens, output_tokens, finish_reason, refusal,"
    " response_model, cost_usd, usage_reported, provider, model, endpoint_assumed,"
    " cache_read_tokens, cache_write_tokens, logprobs"
)


def request_key(provider: str, request: ChatRequest, template_sha256: str) -> str:
    """SHA-256 over the length-prefixed fields of the canonical request. (Length prefixes
    make the encoding unambiguous; it is several times faster than hashing a JSON dump,
    which matters for the fully cached rerun of ~20,000 comparisons.)"""
    fields = [
        provider, request.model, str(request.max_tokens), repr(request.temperature),
        str(request.json_mode), template_sha256,
    ]
    if request.top_logprobs:  # (only then: every other request keeps the key it always had)
        fields.append(f"top_logprobs={request.top_logprobs}")
    for role, content in request.messages:
        fields += (role, content)
    parts: list[bytes] = []
    for value in fields:
        encoded = value.encode()
        parts += (_LENGTH.pack(len(encoded)), encoded)  # (no copy of a long prompt before hashing)
    return hashlib.sha256(b"".join(parts)).hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedReward:
    reward: float
    truncated: bool
    tokens: int
    endpoint: str | None = None  # where it was computed (endpoints.LOCAL: in-process); None: not recorded


@dataclass(frozen=True)
class Elsewhere:
    """Answers the cache holds from endpoints a run may not use: how many of the wanted
    requests have one, and how many of them each endpoint answered (a request answered by
    two endpoints counts once in `answered`, and once for each endpoint)."""

    answered: int
    endpoints: dict[str, int]


CREATING = "creating"  # a batch's state from before its creation until the provider gives its id


@dataclass(frozen=True)
class PendingBatch:
    """An unfinished provider batch, or the intent to create one (`creating`: `id` is its tag
    until the provider gives an id)."""

    id: str
    provider: str
    model: str
    endpoint: str
    items: list[tuple[str, str, int]]  # (custom_id, request key, sample)
    state: str  # CREATING, "submitted", or the provider's last word on it (in_progress, ...)
    created_at: float
    tag: str | None = None  # what the provider keeps with the batch (None: recorded before tags)
    owner: str | None = None  # while creating: the process creating it
    lease_until: float | None = None  # ... which holds it until then, unless it renews

    @property
    def creating(self) -> bool:
        return self.state == CREATING

    def describe(self) -> str:
        """"batch ID (openai:MODEL at URL, 17 requests, submitted 3.2 h ago)"."""
        what = "creation of a batch" if self.creating else "batch"
        return (f"{what} {self.id} ({self.provider}:{self.model} at {self.endpoint}, {len(self.items)} requests, "
                f"submitted {age(time.time() - self.created_at)} ago)")


def age(seconds: float) -> str:
    """A duration as people say it: 42 s, 12 min, 3.2 h, 2.1 days."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class Claims:
    """What `Cache.claim` found: answers already there, requests now ours to send, and
    requests another live process is sending."""

    answered: dict[tuple[str, int], ChatResponse]
    mine: list[tuple[str, int]]
    held: list[tuple[str, int]]


_T = TypeVar("_T")


def guarded(method: Callable[..., _T]) -> Callable[..., _T]:
    """SQLite errors become one-line CacheErrors naming the file. A cache another process
    holds locked is waited for, in short steps, up to PATIENCE seconds, or until the cache is
    `abandon`ed (a run being cancelled must not wait out someone else's transaction)."""

    @functools.wraps(method)
    def wrapper(self: Cache, *args: Any, **kwargs: Any) -> _T:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or self.abandon or time.monotonic() > deadline:
                    raise self.error(exc) from None
            except sqlite3.Error as exc:
                raise self.error(exc) from None

    return wrapper


def cache_file(path: Path | str) -> Path:
    """The database file `--cache PATH` names: PATH itself if it has a database suffix,
    else PATH/rmb-judge.sqlite3."""
    path = Path(path)
    return path if path.suffix in (".sqlite3", ".sqlite", ".db") else path / FILENAME


@dataclass(frozen=True)
class Answer:
    """One answer to store, with what produced it."""

    key: str
    sample: int
    provider: str
    request: ChatRequest | None  # None: a batch answer whose request this run did not build
    response: ChatResponse
    template: str = ""
    template_sha256: str = ""


class Cache:
    def __init__(self, path: Path | str, *, create: bool = True):
        path = cache_file(path)
        self.path = path
        self.owner = f"{_PLACE}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.read_only = False
        self.abandon = False  # give up waiting on a lock at once (the run is being cancelled)
        self._batched_memo: tuple[Any, set[tuple[str, int]]] = (None, set())
        if not path.is_file():
            if path.exists():
                raise CacheError(f"{path}: not a file; give --cache a folder or a .sqlite3 file")
            if not create:
                raise CacheError(f"{path}: no cache here (check --cache)")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"{path.parent}: cannot create the cache folder ({exc.strerror})") from None
        try:
            self.db = self._open()
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        self._check_schema()

    def _open(self) -> sqlite3.Connection:
        """Read-write when the file (and its folder) can be written, else read-only."""
        try:
            db = self._connect(self.path.absolute().as_uri())
            db.execute("BEGIN IMMEDIATE")  # can we write? (creates the file when new)
            db.execute("ROLLBACK")
            return db
        except sqlite3.OperationalError as exc:
            if not self.path.is_file() or not _read_only_error(exc):
                raise
        self.read_only = True
        for mode in ("mode=ro", "immutable=1"):  # a WAL file whose -shm cannot be made: immutable
            db = self._connect(f"{self.path.absolute().as_uri()}?{mode}")
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.OperationalError:
                db.close()
                if mode == "immutable=1":
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _connect(uri: str) -> sqlite3.Connection:
        db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={int(LOCK_STEP * 1000)}")
        return db

    def _use_wal(self, db: sqlite3.Connection) -> None:
        """Switch to WAL. When two processes open a new cache at once, the switch can fail
        with "database is locked" without waiting on the busy timeout, so try again."""
        for attempt in range(600):
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 599:
                    raise
                time.sleep(0.05)

    @guarded
    def _check_schema(self) -> None:
        """Refuse a foreign file and one written by a newer rmb-judge; upgrade an older one."""
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "_migrations" not in tables:
            others = ", ".join(sorted(tables - OUR_TABLES)[:4]) or ", ".join(sorted(tables)[:4])
            raise CacheError(
                f"{self.path}: not an rmb-judge cache (a SQLite database with tables {others}); "
                "give --cache another path"
            )
        if "_migrations" in tables:
            applied = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
            unknown = sorted(applied - {fn.__name__ for fn in MIGRATIONS})
            if unknown:
                raise CacheError(
                    f"{self.path}: written by a newer rmb-judge (schema steps {', '.join(unknown)} "
                    "are unknown to this version); upgrade rmb-judge or give --cache another path"
                )
        if self.read_only:
            if pending(self.db):
                raise CacheError(
                    f"{self.path}: read-only, and made by an older rmb-judge: it needs an upgrade "
                    "this version cannot write; copy it somewhere writable and point --cache there"
                )
            return
        self._use_wal(self.db)  # (only now: a refused file is left byte for byte as it was)
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        migrate(self.db)

    def error(self, exc: sqlite3.Error) -> CacheError:
        """A one-line CacheError for an SQLite failure on this file."""
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("full" in message or "disk I/O" in message):
            return CacheFull(f"{self.path}: cannot write to the cache ({message})")
        if _read_only_error(exc):
            return CacheError(f"{self.path}: the cache is read-only ({message})")
        if "locked" in message:
            return CacheError(f"{self.path}: the cache stayed locked by another process ({message})")
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in message or "malformed" in message):
            return CacheError(
                f"{self.path}: the cache file is damaged or not a SQLite database ({message}); "
                "move it aside (rmb-judge then starts a new cache) or give --cache another path"
            )
        return CacheError(f"{self.path}: cache error: {message}")

    def close(self) -> None:
        if not self.read_only:
            try:
                self.db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
                self._release_intents(None)
            except sqlite3.Error:
                pass  # a failing disk: the claims lapse on their own
        self.db.close()

    def writable(self, what: str) -> None:
        """Raise a one-line CacheError if `what` would need to write to a read-only cache."""
        if self.read_only:
            raise CacheError(
                f"{self.path}: the cache is read-only, so {what} could not be kept; "
                "use --offline to answer from it, or give a writable --cache"
            )

    # -- judge responses -------------------------------------------------------------

    @guarded
    def get_responses(
        self, wanted: Iterable[tuple[str, int]], endpoints: Iterable[str] | None
    ) -> dict[tuple[str, int], ChatResponse]:
        """The cached answers to `wanted` (key, sample) from any of `endpoints` (None: any)."""
        return self._responses(set(wanted), None if endpoints is None else tuple(endpoints))

    def _responses(
        self, wanted: set[tuple[str, int]], endpoints: tuple[str, ...] | None
    ) -> dict[tuple[str, int], ChatResponse]:
        found: dict[tuple[str, int], ChatResponse] = {}
        keys = sorted({key for key, _ in wanted})
        where = "" if endpoints is None else f" AND endpoint IN ({','.join('?' * len(endpoints))})"
        per_chunk = CHUNK - len(endpoints or ())
        for start in range(0, len(keys), per_chunk):
            chunk = keys[start : start + per_chunk]
            rows = self.db.execute(
                f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                f"{where} ORDER BY created_at",
                [*chunk, *(endpoints or ())],
            )
            for (key, sample, endpoint, text, tin, tout, finish, refusal, model, cost, reported,
                 provider, requested_model, assumed, read, written, logprobs) in rows:
                if (key, sample) in wanted and (key, sample) not in found:
                    found[key, sample] = ChatResponse(
                        text, tin or 0, tout or 0, model or "", finish, bool(refusal),
                        usage_reported=bool(reported), cost_usd=cost, endpoint=endpoint,
                        extra={"provider": provider, "model": requested_model, "endpoint_assumed": bool(assumed)},
                        cache_read_tokens=read, cache_write_tokens=written,
                        logprobs=None if logprobs is None else json.loads(logprobs),
                    )
        return found

    @guarded
    def other_endpoints(self, wanted: Iterable[tuple[str, int]], endpoints: Iterable[str]) -> Elsewhere:
        """What endpoints outside `endpoints` have answered of `wanted` (for a hint when a run
        against a new endpoint finds answers it may not use)."""
        wanted, mine = set(wanted), set(endpoints)
        counts: dict[str, int] = {}
        answered: set[tuple[str, int]] = set()
        keys = sorted({key for key, _ in wanted})
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            for key, sample, endpoint in self.db.execute(
                f"SELECT key, sample, endpoint FROM responses WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                if (key, sample) in wanted and endpoint not in mine:
                    counts[endpoint] = counts.get(endpoint, 0) + 1
                    answered.add((key, sample))
        return Elsewhere(len(answered), dict(sorted(counts.items())))

    def put_response(
        self,
        key: str,
        sample: int,
        provider: str,
        request: ChatRequest | None,
        response: ChatResponse,
        template: str = "",
        template_sha256: str = "",
    ) -> None:
        """Store one answer (see put_answers)."""
        self.put_answers([Answer(key, sample, provider, request, response, template, template_sha256)])

    @guarded
    def put_answers(self, answers: Sequence[Answer]) -> None:
        """Store answers and release this process's claims on them, in one transaction (the
        engine writes the answers that arrived while the last write was committing together:
        one commit per answer cost a third of the engine's CPU at high request rates).
        `request` may be None for a batch answer whose request the current run did not build
        (it is still paid for, so it is kept)."""
        rows = [
            (
                a.key, a.sample, a.response.endpoint, a.provider,
                a.request.model if a.request else a.response.model,
                a.template, a.template_sha256,
                zlib.compress(json.dumps(a.request.canonical(), ensure_ascii=False).encode(), 1)
                if a.request else None,
                a.response.text, a.response.input_tokens, a.response.output_tokens,
                a.response.finish_reason, int(a.response.refusal), a.response.model, time.time(),
                a.response.cost_usd, int(a.response.usage_reported), a.response.cache_read_tokens,
                a.response.cache_write_tokens,
                None if a.response.logprobs is None else json.dumps(a.response.logprobs, separators=(",", ":")),
            )
            for a in answers
        ]
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO responses (key, sample, endpoint, provider, model, template,"
                " template_sha256, request, text, input_tokens, output_tokens, finish_reason,"
                " refusal, response_model, created_at, cost_usd, usage_reported, cache_read_tokens,"
                " cache_write_tokens, logprobs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self.db.executemany(
                "DELETE FROM claims WHERE key = ? AND sample = ? AND owner = ?",
                [(a.key, a.sample, self.owner) for a in answers],
            )
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # (a failed COMMIT has already rolled back)
                self.db.execute("ROLLBACK")
            raise

    # -- claims: several processes, one payment ------------------------------------------

    @guarded
    def claim(self, wanted: list[tuple[str, int]], endpoints: Iterable[str]) -> Claims:
        """Take the requests in `wanted` that nobody else is sending, in one transaction;
        report those answered meanwhile (from `endpoints`) and those another process holds."""
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            answered = self._responses(set(wanted), tuple(endpoints))
            rest = [w for w in wanted if w not in answered]
            holders: dict[tuple[str, int], tuple[str, float]] = {}
            keys = sorted({key for key, _ in rest})
            for start in range(0, len(keys), CHUNK):
                chunk = keys[start : start + CHUNK]
                for key, sample, owner, expires in self.db.execute(
                    "SELECT key, sample, owner, expires_at FROM claims"
                    f" WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ):
                    holders[key, sample] = (owner, expires)
            batched = self._batched(endpoints)
            mine, held = [], []
            for item in rest:
                holder = holders.get(item)
                if item in batched:
                    held.append(item)  # in a batch the provider is running: its answer will come
                elif holder is None or holder[0] == self.owner or holder[1] < now or _dead(holder[0]):
                    mine.append(item)
                else:
                    held.append(item)
            self.db.executemany(
                "INSERT OR REPLACE INTO claims (key, sample, owner, expires_at) VALUES (?,?,?,?)",
                [(key, sample, self.owner, now + CLAIM_SECONDS) for key, sample in mine],
            )
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # (a failed COMMIT has already rolled back)
                self.db.execute("ROLLBACK")
            raise
        return Claims(answered, mine, held)

    def _batched(self, endpoints: Iterable[str]) -> set[tuple[str, int]]:
        """(key, sample) of every item in an unfinished batch at these endpoints; read again
        only when the batches table changed."""
        endpoints = tuple(endpoints)
        marks = ",".join("?" * len(endpoints))
        signature = self.db.execute(
            f"SELECT COUNT(*), MAX(rowid) FROM batches WHERE finished_at IS NULL AND endpoint IN ({marks})",
            endpoints,
        ).fetchone()
        if self._batched_memo[0] != (endpoints, signature):
            rows = self.db.execute(
                f"SELECT items FROM batches WHERE finished_at IS NULL AND endpoint IN ({marks})", endpoints
            )
            keys = {(key, sample) for (items,) in rows for _, key, sample in json.loads(zlib.decompress(items))}
            self._batched_memo = ((endpoints, signature), keys)
        return self._batched_memo[1]

    @guarded
    def renew_claims(self) -> None:
        self.db.execute(
            "UPDATE claims SET expires_at = ? WHERE owner = ?", (time.time() + CLAIM_SECONDS, self.owner)
        )

    @guarded
    def release(self, key: str, sample: int) -> None:
        """Give up a claim without an answer (the request failed or was not sent)."""
        self.db.execute(
            "DELETE FROM claims WHERE key = ? AND sample = ? AND owner = ?", (key, sample, self.owner)
        )

    # -- answers a failing disk could not take -------------------------------------------

    @property
    def side_file(self) -> Path:
        return self.path.with_name(self.path.name + ".unsaved.jsonl")

    def save_unsaved(self, rows: list[dict[str, Any]]) -> bool:
        """Append answers the database could not store to the side file; False if that
        failed too (the disk is full)."""
        try:
            with self.side_file.open("a", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            return False
        return True

    def take_unsaved(self, *extra: Path) -> int:
        """Add the answers earlier runs could not store (the side file, and `extra` files such
        as a run folder's), then remove those files. A line that cannot be read is kept, in
        its file, for a person to look at; returns how many answers were added."""
        taken = 0
        for path in (self.side_file, *extra):
            if self.read_only or not path.is_file():
                continue
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    canonical = row["request"]
                    request = canonical and ChatRequest(
                        **{**canonical, "messages": tuple(tuple(m) for m in canonical["messages"])}
                    )
                    response = ChatResponse(**row["response"])
                    self.put_response(row["key"], row["sample"], row["provider"], request, response,
                                      row["template"], row["template_sha256"])
                    taken += 1
                except (ValueError, KeyError, TypeError, AttributeError):
                    kept.append(line)  # (the last line of a file cut off by a full disk, say)
            if kept:
                path.write_text("\n".join(kept) + "\n", encoding="utf-8")
            else:
                path.unlink()
        return taken

    # -- local rewards ---------------------------------------------------------------

    @guarded
    def get_rewards(self, model_key: str, hashes: Iterable[str]) -> dict[str, CachedReward]:
        hashes = sorted(set(hashes))
        found: dict[str, CachedReward] = {}
        for start in range(0, len(hashes), CHUNK):
            chunk = hashes[start : start + CHUNK]
            rows = self.db.execute(
                "SELECT text_sha256, reward, truncated, tokens, endpoint FROM rewards WHERE model_key = ?"
                f" AND text_sha256 IN ({','.join('?' * len(chunk))})",
                [model_key, *chunk],
            )
            for digest, reward, truncated, tokens, endpoint in rows:
                found[digest] = CachedReward(reward, bool(truncated), tokens or 0, endpoint)
        return found

    @guarded
    def put_rewards(
        self, model_key: str, model: str, rows: Iterable[tuple[str, CachedReward]], *, release: bool = False
    ) -> None:
        """Store rewards; `release`: also end this process's claims on them (served reward
        models score through the engine, which claims each answer before sending it)."""
        now = time.time()
        rows = list(rows)
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO rewards (model_key, text_sha256, model, reward, truncated,"
                " tokens, created_at, endpoint) VALUES (?,?,?,?,?,?,?,?)",
                [(model_key, d, model, r.reward, int(r.truncated), r.tokens, now, r.endpoint) for d, r in rows],
            )
            if release:
                self.db.executemany(
                    "DELETE FROM claims WHERE key = ? AND sample = 0 AND owner = ?",
                    [(d, self.owner) for d, _ in rows],
                )

    @guarded
    def reward_models(self, model: str) -> list[str]:
        """The model keys (identities) rewards of `model` are cached under, newest first."""
        rows = self.db.execute(
            "SELECT model_key FROM rewards WHERE model = ? GROUP BY model_key ORDER BY MAX(created_at) DESC",
            (model,),
        )
        return [key for (key,) in rows]

    @guarded
    def reward_endpoints(self, model_key: str) -> list[str | None]:
        """Where the rewards cached under `model_key` were computed (None: not recorded)."""
        rows = self.db.execute("SELECT DISTINCT endpoint FROM rewards WHERE model_key = ?", (model_key,))
        return [endpoint for (endpoint,) in rows]

    @guarded
    def probes(self, model_key: str) -> dict[str, dict[str, float]]:
        """What each server answered to the preflight's probe inputs (text sha256 -> reward)."""
        rows = self.db.execute("SELECT endpoint, rewards FROM probes WHERE model_key = ?", (model_key,))
        return {endpoint: json.loads(rewards) for endpoint, rewards in rows}

    @guarded
    def put_probes(self, model_key: str, answers: dict[str, dict[str, float]]) -> None:
        """Keep what each server (endpoint) answered to the probe inputs."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO probes (model_key, endpoint, rewards, created_at) VALUES (?,?,?,?)",
                [(model_key, endpoint, json.dumps(rewards, sort_keys=True), now)
                 for endpoint, rewards in answers.items()],
            )

    # -- provider batches ----------------------------------------------------------------

    _BATCH_COLUMNS = "id, provider, model, endpoint, items, state, created_at, tag, owner, lease_until"

    @staticmethod
    def _pending_batch(row: tuple) -> PendingBatch:
        bid, provider, model, endpoint, items, state, created, tag, owner, lease = row
        return PendingBatch(bid, provider, model, endpoint, [tuple(i) for i in json.loads(zlib.decompress(items))],
                            state, created, tag, owner, lease)

    @guarded
    def add_batch_intent(self, tag: str, provider: str, model: str, endpoint: str,
                         items: list[tuple[str, str, int]]) -> PendingBatch:
        """Record a batch about to be created, and its items as (custom_id, key, sample),
        held by this process for CLAIM_SECONDS (`renew_batch_lease`): from now on the items
        are waited for, not sent, by every process sharing the cache."""
        now = time.time()
        packed = zlib.compress(json.dumps(items).encode())
        self.db.execute(
            f"INSERT INTO batches ({self._BATCH_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (tag, provider, model, endpoint, packed, CREATING, now, tag, self.owner, now + CLAIM_SECONDS),
        )
        return PendingBatch(tag, provider, model, endpoint, items, CREATING, now, tag, self.owner,
                            now + CLAIM_SECONDS)

    @guarded
    def batch_created(self, tag: str, batch_id: str) -> None:
        """The provider created the batch recorded as `tag`: it is known by `batch_id` from now on."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute("SELECT 1 FROM batches WHERE id = ?", (batch_id,)).fetchone():
                self.db.execute("DELETE FROM batches WHERE id = ? AND state = ?", (tag, CREATING))  # recorded already
            else:
                self.db.execute(
                    "UPDATE batches SET id = ?, state = 'submitted', owner = NULL, lease_until = NULL"
                    " WHERE id = ? AND state = ?", (batch_id, tag, CREATING),
                )

    @guarded
    def renew_batch_lease(self, tag: str) -> None:
        self.db.execute(
            "UPDATE batches SET lease_until = ? WHERE id = ? AND state = ? AND owner = ?",
            (time.time() + CLAIM_SECONDS, tag, CREATING, self.owner),
        )

    @guarded
    def release_batch_intent(self, tag: str) -> None:
        """Give up this process's hold on the creation recorded as `tag`, so the next run
        takes it over at once (closing the cache gives up all of them)."""
        self._release_intents(tag)

    def _release_intents(self, tag: str | None) -> None:
        self.db.execute(
            "UPDATE batches SET lease_until = 0 WHERE owner = ? AND state = ? AND coalesce(?, id) = id",
            (self.owner, CREATING, tag),
        )

    @guarded
    def take_batch_intent(self, tag: str) -> bool:
        """Take over the creation recorded as `tag` if its process is gone (or its lease has
        lapsed); False while another live process holds it, or once it is no creation."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT owner, lease_until FROM batches WHERE id = ? AND state = ?", (tag, CREATING)
            ).fetchone()
            if row is None:
                return False
            owner, lease = row
            if owner not in (None, self.owner) and (lease or 0) >= now and not _dead(owner):
                return False
            self.db.execute("UPDATE batches SET owner = ?, lease_until = ? WHERE id = ?",
                            (self.owner, now + CLAIM_SECONDS, tag))
        return True

    @guarded
    def drop_batch_intent(self, tag: str) -> None:
        """The creation recorded as `tag` did not happen: its items are free again."""
        self.db.execute("DELETE FROM batches WHERE id = ? AND state = ?", (tag, CREATING))

    @guarded
    def batch_tagged(self, tag: str) -> PendingBatch | None:
        """The batch (or creation) recorded with `tag`, finished or not."""
        row = self.db.execute(f"SELECT {self._BATCH_COLUMNS} FROM batches WHERE tag = ?", (tag,)).fetchone()
        return None if row is None else self._pending_batch(row)

    @guarded
    def batch_ids(self, endpoint: str) -> set[str]:
        """Every batch id recorded for `endpoint`, finished or not."""
        rows = self.db.execute("SELECT id FROM batches WHERE endpoint = ? AND state != ?", (endpoint, CREATING))
        return {bid for (bid,) in rows}

    @guarded
    def pending_batches(self, provider: str | None = None, model: str | None = None,
                        endpoint: str | None = None) -> list[PendingBatch]:
        """The unfinished batches (and creations) of this provider, model and endpoint (None: any), oldest first."""
        rows = self.db.execute(
            f"SELECT {self._BATCH_COLUMNS} FROM batches WHERE finished_at IS NULL"
            " AND coalesce(?, provider) = provider AND coalesce(?, model) = model"
            " AND coalesce(?, endpoint) = endpoint ORDER BY created_at",
            (provider, model, endpoint),
        )
        return [self._pending_batch(row) for row in rows]

    @guarded
    def note_batch_state(self, batch_id: str, state: str) -> None:
        """The provider's last word on an unfinished batch (for `cache batches`)."""
        self.db.execute("UPDATE batches SET state = ? WHERE id = ? AND finished_at IS NULL AND state != ?",
                        (state, batch_id, CREATING))

    @guarded
    def finish_batch(self, batch_id: str, state: str) -> None:
        self.db.execute(
            "UPDATE batches SET state = ?, finished_at = ? WHERE id = ?", (state, time.time(), batch_id)
        )

    @guarded
    def forget_batch(self, batch_id: str) -> PendingBatch | None:
        """Stop waiting for an unfinished batch (or creation): it is marked finished as
        "forgotten" and its items are free to be sent again. None if there is no such batch."""
        self.writable("forgetting a batch")
        row = self.db.execute(
            f"SELECT {self._BATCH_COLUMNS} FROM batches WHERE id = ? AND finished_at IS NULL", (batch_id,)
        ).fetchone()
        if row is None:
            return None
        self.finish_batch(batch_id, "forgotten")
        return self._pending_batch(row)

    # -- runs, for hit-rate statistics -----------------------------------------------

    def record_run(self, judge: str, lookups: int, hits: int, requests: int) -> None:
        """Best effort: a statistics line must not fail a run whose answers are safe."""
        if self.read_only:
            return
        try:
            self.db.execute(
                "INSERT INTO runs (started_at, judge, lookups, hits, requests) VALUES (?,?,?,?,?)",
                (time.time(), judge, lookups, hits, requests),
            )
        except sqlite3.Error:
            pass

    # -- maintenance -------------------------------------------------------------------

    @guarded
    def stats(self) -> dict:
        responses = self.db.execute(
            "SELECT provider, model, endpoint, template, COUNT(*), SUM(input_tokens), SUM(output_tokens)"
            " FROM responses GROUP BY provider, model, endpoint, template ORDER BY COUNT(*) DESC"
        ).fetchall()
        rewards = self.db.execute(
            "SELECT model, endpoint, COUNT(*) FROM rewards GROUP BY model, endpoint ORDER BY COUNT(*) DESC"
        ).fetchall()
        runs = self.db.execute(
            "SELECT started_at, judge, lookups, hits, requests FROM runs ORDER BY id DESC LIMIT 10"
        ).fetchall()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        return {
            "path": str(self.path),
            "size_bytes": size,
            "read_only": self.read_only,
            "responses": [
                {"provider": p, "model": m, "endpoint": e, "template": t, "rows": n,
                 "input_tokens": i or 0, "output_tokens": o or 0}
                for p, m, e, t, n, i, o in responses
            ],
            "rewards": [{"model": m, "endpoint": e, "rows": n} for m, e, n in rewards],
            "runs": [
                {"started_at": s, "judge": j, "lookups": lk, "hits": h, "requests": r,
                 "hit_rate": (h / lk) if lk else None}
                for s, j, lk, h, r in runs
            ],
        }

    @guarded
    def prune(self, model: str | None = None, older_than_days: float | None = None,
              dry_run: bool = False, endpoint: str | None = None) -> int:
        """Delete responses and rewards of a model, from an endpoint and/or older than N days;
        returns the rows removed (or, with `dry_run`, the rows that would be)."""
        clauses: list[str] = []
        params: list[Any] = []
        if model:
            clauses.append("model = ?")
            params.append(model)
        if endpoint:
            clauses.append("endpoint = ?")
            params.append(endpoint)
        if older_than_days is not None:
            clauses.append("created_at < ?")
            params.append(time.time() - older_than_days * 86400)
        where = " AND ".join(clauses) or "1"
        if dry_run:
            return sum(
                self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()[0]
                for table in ("responses", "rewards")
            )
        self.writable("pruning")
        with self.db:
            self.db.execute("BEGIN")
            removed = self.db.execute(f"DELETE FROM responses WHERE {where}", params).rowcount
            removed += self.db.execute(f"DELETE FROM rewards WHERE {where}", params).rowcount
        self.db.execute("VACUUM")
        return removed

    def export(self) -> Iterator[dict]:
        try:
            yield from self._export()
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def _export(self) -> Iterator[dict]:
        rows = self.db.execute(
            "SELECT key, sample, endpoint, provider, model, template, template_sha256, request, text,"
            " input_tokens, output_tokens, finish_reason, refusal, response_model, created_at,"
            " cost_usd, usage_reported, cache_read_tokens, cache_write_tokens, logprobs FROM responses"
            " ORDER BY created_at"
        )
        for row in rows:
            (key, sample, endpoint, provider, model, template, tsha, request, text, tin, tout, finish,
             refusal, rmodel, created, cost, reported, read, written, logprobs) = row
            yield {
                "kind": "response", "key": key, "sample": sample, "endpoint": endpoint,
                "provider": provider, "model": model, "template": template, "template_sha256": tsha,
                "request": json.loads(zlib.decompress(request)) if request else None,
                "text": text, "input_tokens": tin, "output_tokens": tout,
                "cache_read_tokens": read, "cache_write_tokens": written,
                "finish_reason": finish, "refusal": bool(refusal), "response_model": rmodel,
                "created_at": created, "cost_usd": cost, "usage_reported": bool(reported),
                "logprobs": None if logprobs is None else json.loads(logprobs),
            }
        for model_key, digest, model, reward, truncated, tokens, created, endpoint in self.db.execute(
            "SELECT model_key, text_sha256, model, reward, truncated, tokens, created_at, endpoint FROM rewards"
        ):
            yield {
                "kind": "reward", "model_key": model_key, "text_sha256": digest, "model": model,
                "reward": reward, "truncated": bool(truncated), "tokens": tokens,
                "created_at": created, "endpoint": endpoint,
            }


def _read_only_error(exc: sqlite3.Error) -> bool:
    message = str(exc)
    return "readonly" in message or "read-only" in message or "unable to open" in message


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return ""


# Where this process's pid means something: host and pid namespace. A claim whose owner ran
# in the same place can be checked for a live process; any other lapses only by its expiry
# (a container sharing the hostname has pids of its own).
_PLACE = f"{socket.gethostname()}/{_pid_namespace()}".replace("/", "|", 1)


def _dead(owner: str) -> bool:
    """A claim's owner ran here (same host and pid namespace) and is gone: its claims lapse
    at once."""
    place, _, rest = owner.rpartition("/")[0].rpartition("/")
    if not _pid_namespace() or place != _PLACE or not rest.isdigit():
        return False
    try:
        os.kill(int(rest), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
