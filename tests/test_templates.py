import pytest

from rmb_judge import records, templates
from rmb_judge.cache import request_key
from rmb_judge.comparisons import RequestSettings, comparisons_of, presentations, requests_for
from rmb_judge.errors import UsageError


def test_shipped_templates_load():
    assert set(templates.available()) >= {"rmb", "rmb-criteria", "pointwise", "arena-hard", "json"}
    for name in templates.available():
        t = templates.load(name)
        assert t.sha256 and t.style in templates.STYLES


def test_rmb_template_is_the_reference_prompt(data_root):
    """RewardBench's pair-v2 system prompt without the tie option, question then A then B."""
    t = templates.load("rmb")
    assert t.system.startswith("Please act as an impartial judge")
    assert t.system.endswith('"[[A]]" if assistant A is better, "[[B]]" if assistant B is better.')
    assert "[[C]]" not in t.system
    rec = records.load(data_root, records.Selection(sets=["pairwise"], scenarios=["*Chat/Discussion"], limit=1)).records[0]
    (system, s), (user, u) = t.render_pair(rec.conversation, rec.section, "ANSWER-ONE", "ANSWER-TWO")
    assert (system, user) == ("system", "user")
    assert u == ("[User Question]\n" + rec.conversation[0].content +
                 "\n\n[The Start of Assistant A's Answer]\nANSWER-ONE\n[The End of Assistant A's Answer]"
                 "\n\n[The Start of Assistant B's Answer]\nANSWER-TWO\n[The End of Assistant B's Answer]")


def test_multi_turn_conversation_rendered_with_roles(data_root):
    rec = next(r for r in records.load(data_root, records.Selection(sets=["bon"], scenarios=["*multi"])).records
               if len(r.conversation) == 3)
    _, (_, user) = templates.load("rmb").render_pair(rec.conversation, rec.section, "x", "y")
    assert user.count("### User:") == 2 and user.count("### Assistant:") == 1
    assert rec.conversation[1].content in user


def test_criteria_follow_the_goal(data_root):
    t = templates.load("rmb-criteria")
    conv = (records.Message("user", "hi"),)
    helpful = t.render_pair(conv, "helpfulness", "a", "b")[0][1]
    harmless = t.render_pair(conv, "harmlessness", "a", "b")[0][1]
    assert "goal is helpfulness" in helpful and "Safety comes first" in harmless


def test_template_text_is_part_of_the_cache_key(tmp_path, data_root):
    src = templates.PROMPTS_DIR / "rmb.toml"
    copy = tmp_path / "mine.toml"
    copy.write_text(src.read_text())
    rec = records.load(data_root, records.Selection(sets=["pairwise"], limit=1)).records[0]
    p = presentations(comparisons_of([rec]), "fixed", 0)[0]
    settings = RequestSettings("openai", "m", 100, 0.0)
    key_a = requests_for(p, templates.load(str(copy)), settings)[0][0]
    copy.write_text(src.read_text().replace("impartial judge", "fair judge"))
    key_b = requests_for(p, templates.load(str(copy)), settings)[0][0]
    assert key_a != key_b
    # a byte-identical copy under another name is the same request
    assert key_a == requests_for(p, templates.load("rmb"), settings)[0][0]


def test_user_template_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "pairwise"\nuser = "only {answer_a}"\n')
    with pytest.raises(UsageError, match="lacks answer_b"):
        templates.load(str(bad))
    with pytest.raises(UsageError, match="no template 'nope'"):
        templates.load("nope")


PINNED_KEY = "7a8b05f54fc12c1d2df3e04959a3fc6c1a5dec959d0ab0d35e9f67e9518dd714"


def test_request_key_never_holds_transport_or_key():
    from rmb_judge.providers.base import ChatRequest

    req = ChatRequest("gpt-x", (("user", "hi"),), 10, 0.0)
    # pinned: a change to the key function would orphan every user's cache
    assert request_key("openai", req, "t") == PINNED_KEY
    assert request_key("openai", req, "t") != request_key("anthropic", req, "t")
    assert request_key("openai", req, "t") != request_key("openai", ChatRequest("gpt-x", (("user", "hi"),), 10, 0.7), "t")
