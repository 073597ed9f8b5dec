import sqlite3
import subprocess
import sys

from rmb_judge import migrations
from rmb_judge.cache import FILENAME, Cache, CachedReward
from rmb_judge.providers.base import ChatRequest, ChatResponse

REQ = ChatRequest("gpt-x", (("system", "s"), ("user", "u")), 50, 0.0)


def test_round_trip_and_samples(tmp_path):
    cache = Cache(tmp_path)
    cache.put_response("k1", 0, "openai", REQ, ChatResponse("[[A]]", 10, 2, "gpt-x-1", "stop"), "rmb", "sha")
    cache.put_response("k1", 2, "openai", REQ, ChatResponse("[[B]]", 10, 2, "gpt-x-1", "length"))
    got = cache.get_responses([("k1", 0), ("k1", 1), ("k1", 2), ("k2", 0)])
    assert set(got) == {("k1", 0), ("k1", 2)}
    assert got["k1", 0].text == "[[A]]" and got["k1", 2].truncated
    exported = list(cache.export())
    assert exported[0]["request"]["messages"] == [["system", "s"], ["user", "u"]]
    cache.put_rewards("model@abc", "m", [("d1", CachedReward(0.5, True, 12))])
    assert cache.get_rewards("model@abc", ["d1", "d2"]) == {"d1": CachedReward(0.5, True, 12)}
    stats = cache.stats()
    assert sum(r["rows"] for r in stats["responses"]) == 2 and stats["rewards"][0]["rows"] == 1
    assert cache.prune(model="gpt-x") == 2
    assert cache.get_responses([("k1", 0)]) == {}


def test_old_cache_is_upgraded_not_discarded(tmp_path):
    """A cache made by a version that only knew the first migration keeps its rows."""
    path = tmp_path / FILENAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    migrations.m001_responses(db)
    db.execute("INSERT INTO _migrations VALUES ('m001_responses', 0)")
    db.execute("INSERT INTO responses (key, sample, provider, model, text, created_at) "
               "VALUES ('old', 0, 'openai', 'gpt-x', '[[B]]', 0)")
    db.commit()
    db.close()
    cache = Cache(tmp_path)
    assert cache.get_responses([("old", 0)])["old", 0].text == "[[B]]"
    names = [r[0] for r in cache.db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [m.__name__ for m in migrations.MIGRATIONS]
    cache.put_rewards("m", "m", [("d", CachedReward(1.0, False, 3))])  # a table added later


def test_two_processes_share_one_cache(tmp_path):
    script = (
        "import sys; from rmb_judge.cache import Cache; from rmb_judge.providers.base import *\n"
        "c = Cache(sys.argv[1]); r = ChatRequest('m', (('user', 'u'),))\n"
        "for i in range(200): c.put_response(f'{sys.argv[2]}{i}', 0, 'openai', r, ChatResponse('x'))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), tag]) for tag in "ab"]
    assert [p.wait(60) for p in procs] == [0, 0]
    cache = Cache(tmp_path)
    assert len(cache.get_responses([(f"{t}{i}", 0) for t in "ab" for i in range(200)])) == 400
