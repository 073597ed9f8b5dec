import os
import sqlite3
import subprocess
import sys
import time

import pytest

from rmb_judge import migrations
from rmb_judge.cache import FILENAME, Cache, CachedReward, Elsewhere
from rmb_judge.errors import CacheError, CacheFull
from rmb_judge.providers.base import ChatRequest, ChatResponse

REQ = ChatRequest("gpt-x", (("system", "s"), ("user", "u")), 50, 0.0)
HERE = "http://127.0.0.1:8000/v1"
THERE = "https://api.openai.com/v1"


def answer(text, endpoint=HERE, **kw):
    return ChatResponse(text, 10, 2, "gpt-x-1", kw.pop("finish", "stop"), endpoint=endpoint, **kw)


def test_round_trip_and_samples(tmp_path):
    cache = Cache(tmp_path)
    cache.put_response("k1", 0, "openai", REQ, answer("[[A]]", cost_usd=0.25), "rmb", "sha")
    cache.put_response("k1", 2, "openai", REQ, answer("[[B]]", finish="length", usage_reported=False))
    got = cache.get_responses([("k1", 0), ("k1", 1), ("k1", 2), ("k2", 0)], [HERE])
    assert set(got) == {("k1", 0), ("k1", 2)}
    assert got["k1", 0].text == "[[A]]" and got["k1", 0].cost_usd == 0.25 and got["k1", 0].endpoint == HERE
    assert got["k1", 2].truncated and not got["k1", 2].usage_reported
    exported = list(cache.export())
    assert exported[0]["request"]["messages"] == [["system", "s"], ["user", "u"]]
    assert exported[0]["endpoint"] == HERE
    cache.put_rewards("model@abc", "m", [("d1", CachedReward(0.5, True, 12))])
    assert cache.get_rewards("model@abc", ["d1", "d2"]) == {"d1": CachedReward(0.5, True, 12)}
    stats = cache.stats()
    assert sum(r["rows"] for r in stats["responses"]) == 2 and stats["rewards"][0]["rows"] == 1
    assert cache.prune(model="gpt-x", dry_run=True) == 2 and len(cache.get_responses([("k1", 0)], None)) == 1
    assert cache.prune(model="gpt-x") == 2
    assert cache.get_responses([("k1", 0)], None) == {}


def test_an_answer_serves_only_its_endpoint(tmp_path):
    """A local server's answer is never served to a run against the official API; both can
    be kept side by side; equivalent endpoints share."""
    cache = Cache(tmp_path)
    cache.put_response("k", 0, "openai", REQ, answer("[[A]]", HERE))
    assert cache.get_responses([("k", 0)], [THERE]) == {}
    assert cache.other_endpoints([("k", 0)], [THERE]) == Elsewhere(1, {HERE: 1})
    cache.put_response("k", 0, "openai", REQ, answer("[[B]]", THERE))
    assert cache.get_responses([("k", 0)], [THERE])["k", 0].text == "[[B]]"
    assert cache.get_responses([("k", 0)], [HERE])["k", 0].text == "[[A]]"
    assert cache.get_responses([("k", 0)], ["http://proxy.local/v1", HERE])["k", 0].text == "[[A]]"


def v4_cache(tmp_path):
    """A cache as the version before endpoints wrote it: four migrations, rows, a batch."""
    path = tmp_path / FILENAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for fn in migrations.MIGRATIONS[:4]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    for provider in ("openai", "anthropic", "mock"):
        db.execute("INSERT INTO responses (key, sample, provider, model, text, input_tokens, output_tokens,"
                   " created_at) VALUES (?, 0, ?, 'm', '[[B]]', 5, 1, 0)", (provider, provider))
    db.execute("INSERT INTO batches (id, provider, model, items, state, created_at) VALUES "
               "('b1', 'openai', 'm', x'00', 'submitted', 0)")
    db.commit()
    db.close()
    return path


def test_old_cache_is_upgraded_not_discarded(tmp_path):
    """Rows from before endpoints were recorded are kept, attributed to the official APIs."""
    v4_cache(tmp_path)
    cache = Cache(tmp_path)
    names = [r[0] for r in cache.db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [m.__name__ for m in migrations.MIGRATIONS]
    assert cache.get_responses([("openai", 0)], [THERE])["openai", 0].text == "[[B]]"
    assert cache.get_responses([("anthropic", 0)], ["https://api.anthropic.com"])
    assert cache.get_responses([("mock", 0)], ["local"])
    assert cache.get_responses([("openai", 0)], [HERE]) == {}
    assert cache.db.execute("SELECT endpoint FROM batches").fetchone() == (THERE,)
    cache.put_rewards("m", "m", [("d", CachedReward(1.0, False, 3))])  # a table added later


def test_cached_input_counts_are_kept_and_old_prices_off_the_official_api_dropped(tmp_path):
    """An answer's tokens read from and written to the provider's prompt cache are stored with
    it. A cache from before: its rows read 0 of them, and a price stored for an answer from
    another server than the official API (the model's name priced it: OpenAI's table for a
    local vLLM) is dropped, to be priced as the run that uses it says."""
    path = tmp_path / FILENAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for fn in migrations.MIGRATIONS[:6]:  # up to the claims table
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    for key, endpoint, provider in (("official", THERE, "openai"), ("local", HERE, "openai"),
                                    ("mock", "local", "mock")):
        db.execute("INSERT INTO responses (key, sample, endpoint, provider, model, text, input_tokens,"
                   " output_tokens, created_at, cost_usd) VALUES (?, 0, ?, ?, 'm', '[[B]]', 5, 1, 0, 0.25)",
                   (key, endpoint, provider))
    db.commit()
    db.close()
    cache = Cache(tmp_path)
    old = cache.get_responses([("official", 0), ("local", 0), ("mock", 0)], None)
    assert {k: r.cost_usd for (k, _), r in old.items()} == {"official": 0.25, "local": None, "mock": 0.25}
    assert all(r.cache_read_tokens == r.cache_write_tokens == 0 for r in old.values())
    cache.put_response("new", 0, "openai", REQ, answer("[[A]]", cache_read_tokens=7, cache_write_tokens=2))
    new = cache.get_responses([("new", 0)], [HERE])["new", 0]
    assert (new.input_tokens, new.cache_read_tokens, new.cache_write_tokens) == (10, 7, 2)
    exported = [row for row in cache.export() if row.get("key") == "new"]
    assert (exported[0]["cache_read_tokens"], exported[0]["cache_write_tokens"]) == (7, 2)


def test_a_cache_from_before_reward_provenance_and_api_paths_is_upgraded(tmp_path):
    """Rewards get where they were computed and one label (the model) for `cache prune`; an
    `openai:` bare-host endpoint becomes its /v1 API root, merging with answers recorded there."""
    path = tmp_path / FILENAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for fn in migrations.MIGRATIONS[:6]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    rewards = [("hf:org/rm@main max_length=8 dtype=bfloat16 reward=logits", "d", "org/rm", 1.5),
               ('vllm-rm {"model": "rm-8b"}', "d", "vllm-rm:rm-8b", -2.0)]
    db.executemany("INSERT INTO rewards (model_key, text_sha256, model, reward, created_at) VALUES (?,?,?,?,0)",
                   rewards)
    answers = [("k1", "http://h:8000", "openai", "bare"), ("k2", "http://h:8000", "openai", "bare"),
               ("k2", "http://h:8000/v1", "openai", "v1"), ("k3", "http://h:8000", "anthropic", "anthropic"),
               ("k4", "https://api.openai.com/v1", "openai", "official")]
    db.executemany("INSERT INTO responses (key, sample, endpoint, provider, model, text, created_at)"
                   " VALUES (?, 0, ?, ?, 'm', ?, 0)", answers)
    db.execute("INSERT INTO batches (id, provider, model, items, state, created_at, endpoint) VALUES "
               "('b1', 'openai', 'm', x'00', 'submitted', 0, 'http://h:8000')")
    db.commit()
    db.close()

    cache = Cache(tmp_path)
    assert cache.get_rewards(rewards[0][0], ["d"])["d"].endpoint == "local"  # computed in-process
    assert cache.get_rewards(rewards[1][0], ["d"])["d"].endpoint is None  # a server, not recorded
    assert sorted(s["model"] for s in cache.stats()["rewards"]) == ["org/rm", "rm-8b"]
    v1 = cache.get_responses([("k1", 0), ("k2", 0), ("k3", 0), ("k4", 0)], ["http://h:8000/v1"])
    assert {k: r.text for (k, _), r in v1.items()} == {"k1": "bare", "k2": "v1"}
    assert cache.get_responses([("k3", 0)], ["http://h:8000"])["k3", 0].text == "anthropic"  # its SDK adds /v1
    assert cache.get_responses([("k4", 0)], [THERE])["k4", 0].text == "official"
    assert cache.db.execute("SELECT endpoint FROM batches").fetchone() == ("http://h:8000/v1",)
    assert cache.prune(model="rm-8b") == 1 and cache.prune(model="org/rm") == 1


def test_two_processes_share_one_cache(tmp_path):
    script = (
        "import sys; from rmb_judge.cache import Cache; from rmb_judge.providers.base import *\n"
        "c = Cache(sys.argv[1]); r = ChatRequest('m', (('user', 'u'),))\n"
        "for i in range(200): c.put_response(f'{sys.argv[2]}{i}', 0, 'openai', r, ChatResponse('x', endpoint='e'))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), tag]) for tag in "ab"]
    assert [p.wait(60) for p in procs] == [0, 0]
    cache = Cache(tmp_path)
    assert len(cache.get_responses([(f"{t}{i}", 0) for t in "ab" for i in range(200)], ["e"])) == 400


def test_claims_keep_two_processes_from_sending_one_request(tmp_path):
    mine, theirs = Cache(tmp_path), Cache(tmp_path)
    wanted = [("k1", 0), ("k2", 0)]
    first = mine.claim(wanted, [HERE])
    assert first.mine == wanted and not first.held
    second = theirs.claim(wanted, [HERE])
    assert second.held == wanted and not second.mine
    mine.put_response("k1", 0, "openai", REQ, answer("[[A]]"))  # answered: its claim goes with it
    mine.release("k2", 0)  # failed: free for others
    third = theirs.claim(wanted, [HERE])
    assert set(third.answered) == {("k1", 0)} and third.mine == [("k2", 0)]
    # a claim whose owner stopped renewing it lapses
    theirs.db.execute("UPDATE claims SET expires_at = ?", (time.time() - 1,))
    assert mine.claim([("k2", 0)], [HERE]).mine == [("k2", 0)]


def test_a_dead_process_claims_lapse_at_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cache = Cache(tmp_path)
    owner = cache.owner.split("/")[0] + f"/{dead.stdout.strip()}/x"
    cache.db.execute("INSERT INTO claims VALUES ('k', 0, ?, ?)", (owner, time.time() + 3600))
    assert cache.claim([("k", 0)], [HERE]).mine == [("k", 0)]
    alive = cache.owner.split("/")[0] + f"/{os.getppid()}/y"
    cache.db.execute("UPDATE claims SET owner = ?", (alive,))
    assert Cache(tmp_path).claim([("k", 0)], [HERE]).held == [("k", 0)]


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b"SQLite format 3\x00" + b"\x00" * 50])
def test_a_damaged_file_is_one_line_and_untouched(tmp_path, content):
    path = tmp_path / FILENAME
    path.write_bytes(content)
    with pytest.raises(CacheError) as caught:
        Cache(tmp_path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert path.read_bytes() == content


def test_a_truncated_cache_is_one_line(tmp_path):
    cache = Cache(tmp_path)
    for i in range(300):
        cache.put_response(f"k{i}", 0, "openai", REQ, answer("x" * 500))
    cache.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    path = tmp_path / FILENAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="damaged") as caught:
        Cache(tmp_path).get_responses([(f"k{i}", 0) for i in range(300)], [HERE])
    assert "\n" not in str(caught.value)


def test_a_foreign_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(CacheError, match="not an rmb-judge cache"):
        Cache(path)
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused_before_anything_is_written(tmp_path):
    cache = Cache(tmp_path)
    cache.db.execute("INSERT INTO _migrations VALUES ('m099_from_the_future', 0)")
    cache.db.execute("ALTER TABLE responses ADD COLUMN future TEXT NOT NULL DEFAULT 'x'")
    cache.close()
    with pytest.raises(CacheError, match="newer rmb-judge .*m099_from_the_future"):
        Cache(tmp_path)


def test_stats_of_a_missing_cache_creates_nothing(tmp_path):
    with pytest.raises(CacheError, match="no cache here"):
        Cache(tmp_path / "TYPO", create=False)
    assert not (tmp_path / "TYPO").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 1 MiB (tmpfs), so writes fail as on a full disk."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_a_read_only_cache_still_answers(small_disk):
    cache = Cache(small_disk)
    cache.put_response("k", 0, "openai", REQ, answer("[[A]]"))
    cache.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    ro = Cache(small_disk)
    assert ro.read_only and ro.get_responses([("k", 0)], [HERE])["k", 0].text == "[[A]]"
    with pytest.raises(CacheError, match="read-only"):
        ro.writable("new answers")
    assert ro.stats()["read_only"]


def test_a_full_disk_keeps_what_was_cached(small_disk):
    cache = Cache(small_disk)
    stored = 0
    with pytest.raises(CacheFull) as caught:
        for i in range(10_000):
            cache.put_response(f"k{i}", 0, "openai", REQ, answer("x" * 2000))
            stored += 1
    assert "\n" not in str(caught.value) and str(cache.path) in str(caught.value)
    cache.close()
    (small_disk / "filler").unlink(missing_ok=True)
    again = Cache(small_disk)
    assert len(again.get_responses([(f"k{i}", 0) for i in range(stored)], [HERE])) == stored


def test_answers_the_disk_could_not_take_are_added_next_time(tmp_path):
    cache = Cache(tmp_path)
    row = {"key": "k", "sample": 0, "provider": "openai", "request": REQ.canonical(),
           "response": {"text": "[[A]]", "input_tokens": 3, "output_tokens": 1, "endpoint": HERE},
           "template": "rmb", "template_sha256": "sha"}
    assert cache.save_unsaved([row])
    with cache.side_file.open("a") as f:
        f.write('{"key": "cut off by a full di')
    cache.close()
    again = Cache(tmp_path)
    assert again.get_responses([("k", 0)], [HERE]) == {}  # opening alone (cache stats) changes nothing
    assert again.take_unsaved() == 1
    assert again.get_responses([("k", 0)], [HERE])["k", 0].text == "[[A]]"
    assert again.side_file.read_text().startswith('{"key": "cut off')  # kept for a person to look at
