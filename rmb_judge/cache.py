"""The response cache: SQLite in WAL mode, one row per request key and sample index.

Every response is committed the moment it arrives, so a `kill -9` loses at most the
requests in flight, and several processes can share one cache file. Keys hash only what
determines the answer (provider, model, messages, sampling parameters, template); never
the API key, and never transport settings (concurrency, timeouts, retries, base URL).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .migrations import migrate
from .providers.base import ChatRequest, ChatResponse

FILENAME = "rmb-judge.sqlite3"
CHUNK = 500  # SQLite host-parameter limit is 999 on old builds


def request_key(provider: str, request: ChatRequest, template_sha256: str) -> str:
    """SHA-256 over the length-prefixed fields of the canonical request. (Length prefixes
    make the encoding unambiguous; it is several times faster than hashing a JSON dump,
    which matters for the fully cached rerun of ~20,000 comparisons.)"""
    fields = [
        provider, request.model, str(request.max_tokens), repr(request.temperature),
        str(request.json_mode), template_sha256,
    ]
    for role, content in request.messages:
        fields += (role, content)
    encoded = [value.encode() for value in fields]
    return hashlib.sha256(b"".join(len(e).to_bytes(8, "big") + e for e in encoded)).hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedReward:
    reward: float
    truncated: bool
    tokens: int


class Cache:
    def __init__(self, path: Path | str):
        path = Path(path)
        if path.suffix not in (".sqlite3", ".sqlite", ".db"):
            path.mkdir(parents=True, exist_ok=True)
            path = path / FILENAME
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout=60000")
        self._use_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        migrate(self.db)

    def _use_wal(self) -> None:
        """Switch to WAL. When two processes open a new cache at once, the switch can fail
        with "database is locked" without waiting on the busy timeout, so try again."""
        for attempt in range(600):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 599:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.db.close()

    # -- judge responses -------------------------------------------------------------

    def get_responses(self, wanted: Iterable[tuple[str, int]]) -> dict[tuple[str, int], ChatResponse]:
        wanted = set(wanted)
        found: dict[tuple[str, int], ChatResponse] = {}
        keys = sorted({key for key, _ in wanted})
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            rows = self.db.execute(
                "SELECT key, sample, text, input_tokens, output_tokens, finish_reason, refusal,"
                f" response_model FROM responses WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for key, sample, text, tin, tout, finish, refusal, model in rows:
                if (key, sample) in wanted:
                    found[key, sample] = ChatResponse(
                        text, tin or 0, tout or 0, model or "", finish, bool(refusal)
                    )
        return found

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
        """Store an answer. `request` may be None for a batch answer whose request the
        current run did not build (it is still paid for, so it is kept)."""
        packed = (
            zlib.compress(json.dumps(request.canonical(), ensure_ascii=False).encode())
            if request else None
        )
        self.db.execute(
            "INSERT OR REPLACE INTO responses (key, sample, provider, model, template,"
            " template_sha256, request, text, input_tokens, output_tokens, finish_reason, refusal,"
            " response_model, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                key, sample, provider, request.model if request else response.model,
                template, template_sha256, packed,
                response.text, response.input_tokens, response.output_tokens,
                response.finish_reason, int(response.refusal), response.model, time.time(),
            ),
        )

    # -- local rewards ---------------------------------------------------------------

    def get_rewards(self, model_key: str, hashes: Iterable[str]) -> dict[str, CachedReward]:
        hashes = sorted(set(hashes))
        found: dict[str, CachedReward] = {}
        for start in range(0, len(hashes), CHUNK):
            chunk = hashes[start : start + CHUNK]
            rows = self.db.execute(
                "SELECT text_sha256, reward, truncated, tokens FROM rewards WHERE model_key = ?"
                f" AND text_sha256 IN ({','.join('?' * len(chunk))})",
                [model_key, *chunk],
            )
            for digest, reward, truncated, tokens in rows:
                found[digest] = CachedReward(reward, bool(truncated), tokens or 0)
        return found

    def put_rewards(
        self, model_key: str, model: str, rows: Iterable[tuple[str, CachedReward]]
    ) -> None:
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO rewards (model_key, text_sha256, model, reward, truncated,"
                " tokens, created_at) VALUES (?,?,?,?,?,?,?)",
                [(model_key, d, model, r.reward, int(r.truncated), r.tokens, now) for d, r in rows],
            )

    # -- provider batches ----------------------------------------------------------------

    def add_batch(self, batch_id: str, provider: str, model: str, items: list[tuple[str, str, int]]) -> None:
        """Remember a submitted batch and its items as (custom_id, key, sample)."""
        packed = zlib.compress(json.dumps(items).encode())
        self.db.execute(
            "INSERT INTO batches (id, provider, model, items, state, created_at) VALUES (?,?,?,?,?,?)",
            (batch_id, provider, model, packed, "submitted", time.time()),
        )

    def pending_batches(self, provider: str, model: str) -> dict[str, list[tuple[str, str, int]]]:
        rows = self.db.execute(
            "SELECT id, items FROM batches WHERE provider = ? AND model = ? AND finished_at IS NULL"
            " ORDER BY created_at",
            (provider, model),
        )
        return {bid: [tuple(i) for i in json.loads(zlib.decompress(items))] for bid, items in rows}

    def finish_batch(self, batch_id: str, state: str) -> None:
        self.db.execute(
            "UPDATE batches SET state = ?, finished_at = ? WHERE id = ?", (state, time.time(), batch_id)
        )

    # -- runs, for hit-rate statistics -----------------------------------------------

    def record_run(self, judge: str, lookups: int, hits: int, requests: int) -> None:
        self.db.execute(
            "INSERT INTO runs (started_at, judge, lookups, hits, requests) VALUES (?,?,?,?,?)",
            (time.time(), judge, lookups, hits, requests),
        )

    # -- maintenance -------------------------------------------------------------------

    def stats(self) -> dict:
        responses = self.db.execute(
            "SELECT provider, model, template, COUNT(*), SUM(input_tokens), SUM(output_tokens)"
            " FROM responses GROUP BY provider, model, template ORDER BY COUNT(*) DESC"
        ).fetchall()
        rewards = self.db.execute(
            "SELECT model, COUNT(*) FROM rewards GROUP BY model ORDER BY COUNT(*) DESC"
        ).fetchall()
        runs = self.db.execute(
            "SELECT started_at, judge, lookups, hits, requests FROM runs ORDER BY id DESC LIMIT 10"
        ).fetchall()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        return {
            "path": str(self.path),
            "size_bytes": size,
            "responses": [
                {"provider": p, "model": m, "template": t, "rows": n,
                 "input_tokens": i or 0, "output_tokens": o or 0}
                for p, m, t, n, i, o in responses
            ],
            "rewards": [{"model": m, "rows": n} for m, n in rewards],
            "runs": [
                {"started_at": s, "judge": j, "lookups": lk, "hits": h, "requests": r,
                 "hit_rate": (h / lk) if lk else None}
                for s, j, lk, h, r in runs
            ],
        }

    def prune(self, model: str | None = None, older_than_days: float | None = None) -> int:
        """Delete responses and rewards of a model and/or older than N days; returns rows removed."""
        clauses, params = [], []
        if model:
            clauses.append("model = ?")
            params.append(model)
        if older_than_days is not None:
            clauses.append("created_at < ?")
            params.append(time.time() - older_than_days * 86400)
        where = " AND ".join(clauses) or "1"
        with self.db:
            self.db.execute("BEGIN")
            removed = self.db.execute(f"DELETE FROM responses WHERE {where}", params).rowcount
            removed += self.db.execute(f"DELETE FROM rewards WHERE {where}", params).rowcount
        self.db.execute("VACUUM")
        return removed

    def export(self) -> Iterator[dict]:
        rows = self.db.execute(
            "SELECT key, sample, provider, model, template, template_sha256, request, text,"
            " input_tokens, output_tokens, finish_reason, refusal, response_model, created_at"
            " FROM responses ORDER BY created_at"
        )
        for row in rows:
            (key, sample, provider, model, template, tsha, request, text, tin, tout, finish,
             refusal, rmodel, created) = row
            yield {
                "kind": "response", "key": key, "sample": sample, "provider": provider,
                "model": model, "template": template, "template_sha256": tsha,
                "request": json.loads(zlib.decompress(request)) if request else None,
                "text": text, "input_tokens": tin, "output_tokens": tout,
                "finish_reason": finish, "refusal": bool(refusal), "response_model": rmodel,
                "created_at": created,
            }
        for model_key, digest, model, reward, truncated, tokens, created in self.db.execute(
            "SELECT model_key, text_sha256, model, reward, truncated, tokens, created_at FROM rewards"
        ):
            yield {
                "kind": "reward", "model_key": model_key, "text_sha256": digest, "model": model,
                "reward": reward, "truncated": bool(truncated), "tokens": tokens,
                "created_at": created,
            }
