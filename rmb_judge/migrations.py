"""Cache schema, grown by small numbered functions (as in Simon Willison's `llm`).

Each migration runs once, in order, inside a transaction, and is recorded in `_migrations`;
an old cache is upgraded in place, never discarded. Append new migrations; never edit
one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append(fn)
    return fn


def migrate(db: sqlite3.Connection) -> None:
    """Apply what is missing. Each step takes the write lock before looking, so two
    processes opening a new cache at once do not both apply it. `db` is in autocommit
    mode (isolation_level=None), so the transactions here are explicit."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for fn in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        try:
            if not db.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchone():
                fn(db)
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, unixepoch('subsec'))",
                    (fn.__name__,),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def pending(db: sqlite3.Connection) -> list[str]:
    """The migrations this cache still lacks (a read-only cache cannot take them)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    applied = set()
    if "_migrations" in tables:
        applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    return [fn.__name__ for fn in MIGRATIONS if fn.__name__ not in applied]


@migration
def m001_responses(db: sqlite3.Connection) -> None:
    """One row per request key and sample index; the key is a hash of the canonical request."""
    db.execute(
        """CREATE TABLE responses (
            key TEXT NOT NULL,
            sample INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            template TEXT,
            template_sha256 TEXT,
            request BLOB,
            text TEXT NOT NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            finish_reason TEXT,
            refusal INTEGER NOT NULL DEFAULT 0,
            response_model TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (key, sample)
        )"""
    )
    db.execute("CREATE INDEX responses_model ON responses (provider, model)")


@migration
def m002_rewards(db: sqlite3.Connection) -> None:
    """Local reward models: one reward per model identity and exact text scored."""
    db.execute(
        """CREATE TABLE rewards (
            model_key TEXT NOT NULL,
            text_sha256 TEXT NOT NULL,
            model TEXT NOT NULL,
            reward REAL NOT NULL,
            truncated INTEGER NOT NULL DEFAULT 0,
            tokens INTEGER,
            created_at REAL NOT NULL,
            PRIMARY KEY (model_key, text_sha256)
        )"""
    )


@migration
def m003_runs(db: sqlite3.Connection) -> None:
    """A line per run, for `cache stats` hit rates."""
    db.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            judge TEXT NOT NULL,
            lookups INTEGER NOT NULL DEFAULT 0,
            hits INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0
        )"""
    )


@migration
def m004_batches(db: sqlite3.Connection) -> None:
    """Submitted provider batches, so a rerun after a crash resumes polling, never resubmits."""
    db.execute(
        """CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            items BLOB NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL
        )"""
    )


@migration
def m005_endpoints_and_cost(db: sqlite3.Connection) -> None:
    """Each answer records the endpoint that produced it (part of the primary key, so
    answers from two servers can sit side by side), what it cost, and whether the server
    reported its usage. Rows from before are attributed to their provider's official API,
    marked as assumed (runs that use them say so)."""
    db.execute(
        """CREATE TABLE responses_v5 (
            key TEXT NOT NULL,
            sample INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            template TEXT,
            template_sha256 TEXT,
            request BLOB,
            text TEXT NOT NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            finish_reason TEXT,
            refusal INTEGER NOT NULL DEFAULT 0,
            response_model TEXT,
            created_at REAL NOT NULL,
            cost_usd REAL,
            usage_reported INTEGER NOT NULL DEFAULT 1,
            endpoint_assumed INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (key, sample, endpoint)
        )"""
    )
    official = """CASE provider WHEN 'openai' THEN 'https://api.openai.com/v1'
        WHEN 'anthropic' THEN 'https://api.anthropic.com' WHEN 'mock' THEN 'local' ELSE provider END"""
    db.execute(
        f"""INSERT INTO responses_v5 (key, sample, endpoint, provider, model, template,
            template_sha256, request, text, input_tokens, output_tokens, finish_reason, refusal,
            response_model, created_at, endpoint_assumed)
        SELECT key, sample, {official}, provider, model, template, template_sha256, request, text,
            input_tokens, output_tokens, finish_reason, refusal, response_model, created_at, 1
        FROM responses"""
    )
    db.execute("DROP TABLE responses")
    db.execute("ALTER TABLE responses_v5 RENAME TO responses")
    db.execute("CREATE INDEX responses_model ON responses (provider, model)")
    db.execute("ALTER TABLE batches ADD COLUMN endpoint TEXT")
    db.execute(f"UPDATE batches SET endpoint = {official}")


@migration
def m006_claims(db: sqlite3.Connection) -> None:
    """Requests a process is sending now, so another process sharing the cache waits for
    the answer instead of paying for it again. A claim lapses at `expires_at` unless renewed."""
    db.execute(
        """CREATE TABLE claims (
            key TEXT NOT NULL,
            sample INTEGER NOT NULL,
            owner TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (key, sample)
        )"""
    )


@migration
def m007_cached_input_and_prices_off_the_official_apis(db: sqlite3.Connection) -> None:
    """Each answer records how many of its input tokens the provider read from and wrote to
    its prompt cache (billed at their own rates; 0 for rows from before). A price stored for
    an answer from a server other than its provider's official API is dropped: it came from
    the model's name alone (OpenAI's table for a local vLLM); the run that uses the answer
    prices it (unknown unless that run gives --price)."""
    db.execute("ALTER TABLE responses ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE responses ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute(
        """UPDATE responses SET cost_usd = NULL WHERE endpoint != CASE provider
            WHEN 'openai' THEN 'https://api.openai.com/v1' WHEN 'anthropic' THEN 'https://api.anthropic.com'
            WHEN 'google' THEN 'https://generativelanguage.googleapis.com' WHEN 'mock' THEN 'local' END"""
    )


@migration
def m008_reward_provenance(db: sqlite3.Connection) -> None:
    """Each reward records where it was computed (`local` for an `hf:` model, the replica's
    endpoint for a served one; NULL for served rewards from before), and `probes` keeps what
    each server answered to the preflight's fixed inputs, so a later server can be checked
    against those whose rewards the cache holds. Served rewards were labelled by judge spec
    (`vllm-rm:NAME`) and `hf:` ones by model: both by model now, as responses are."""
    db.execute("ALTER TABLE rewards ADD COLUMN endpoint TEXT")
    db.execute("UPDATE rewards SET endpoint = 'local' WHERE model_key NOT LIKE 'vllm-rm %'")
    db.execute(
        "UPDATE rewards SET model = substr(model, length('vllm-rm:') + 1)"
        " WHERE model_key LIKE 'vllm-rm %' AND model LIKE 'vllm-rm:%'"
    )
    db.execute(
        """CREATE TABLE probes (
            model_key TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            rewards TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (model_key, endpoint)
        )"""
    )


@migration
def m009_openai_api_path(db: sqlite3.Connection) -> None:
    """An `openai:` base URL given as a bare host (`http://h:p`) is recorded as the server's
    API root, `http://h:p/v1`, as the same URL with /v1 is: one endpoint. Where both forms
    answered one request, the /v1 answer is kept (only one can be served)."""
    bare = (
        "provider = 'openai' AND endpoint LIKE 'http%://%'"
        " AND instr(substr(endpoint, instr(endpoint, '://') + 3), '/') = 0"
    )
    db.execute(f"UPDATE OR IGNORE responses SET endpoint = endpoint || '/v1' WHERE {bare}")
    db.execute(f"DELETE FROM responses WHERE {bare}")
    db.execute(f"UPDATE batches SET endpoint = endpoint || '/v1' WHERE {bare}")


@migration
def m010_batch_intents(db: sqlite3.Connection) -> None:
    """A batch is recorded before the provider is asked to create it (state 'creating', its
    tag standing in for the id the provider has not given yet), so a creation whose answer
    is lost is looked for, not paid for again. `tag` is what the provider keeps with the
    batch; `owner` and `lease_until` say which process is creating it, and until when."""
    db.execute("ALTER TABLE batches ADD COLUMN tag TEXT")
    db.execute("ALTER TABLE batches ADD COLUMN owner TEXT")
    db.execute("ALTER TABLE batches ADD COLUMN lease_until REAL")


@migration
def m011_verdict_logprobs(db: sqlite3.Connection) -> None:
    """Each answer keeps the logprobs of the tokens that could state its verdict
    (--verdict-probs; verdict_probs.keep), as JSON; NULL for answers that came without them."""
    db.execute("ALTER TABLE responses ADD COLUMN logprobs TEXT")
