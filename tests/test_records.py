import json
import shutil
from collections import Counter

import pytest
from conftest import RMB

from rmb_judge import records
from rmb_judge.errors import DataError


def test_full_dataset_matches_provenance(data_root):
    """The counts PROVENANCE.md states for the shared copy (46 pairwise + 49 BoN files)."""
    lacking = RMB.manifest().missing(data_root)
    if len(lacking) != 3:
        pytest.skip(f"counts of the 95-file shared copy; this one lacks {len(lacking)} files")
    ds = RMB.load(data_root)
    sets = Counter(r.kind for r in ds.records)
    assert sets == {"pairwise": 14543, "bon": 3786}
    assert Counter(r.section for r in ds.records if r.kind == "pairwise") == {
        "pairwise_helpfulness": 8456, "pairwise_harmlessness": 6087}
    assert Counter(r.section for r in ds.records if r.kind == "bon") == {
        "bon_helpfulness": 2109, "bon_harmlessness": 1677}
    assert sum(len(r.rejected) for r in ds.records if r.kind == "bon") == 8714
    turns = Counter(len(r.conversation) == 1 for r in ds.records)
    assert turns == {True: 15768, False: 2561}
    assert ds.scenarios_found == len(RMB.manifest().files) - len(lacking) == 95
    # category_path is the file path without .json, uids are strings
    for r in ds.records[:50]:
        assert r.file.removesuffix(".json") == r.subset


def test_selection_flags(data_root):
    sel = records.Selection(sets=["bon"], sections=["helpfulness"], scenarios=["*Chat*"], limit=4)
    ds = RMB.load(data_root, sel)
    paths = Counter(r.subset for r in ds.records)
    assert set(paths) == {f"BoN_set/Helpfulness/Chat/{n}" for n in
                          ("Casual Conversation", "Discussion", "Supportive Conversation")}
    assert set(paths.values()) == {4}
    # the first N records of each file, in file order
    raw = json.loads((data_root / "BoN_set/Helpfulness/Chat/Discussion.json").read_text())
    assert [r.uid for r in ds.records if r.subset.endswith("Discussion")] == [
        str(x["bon_uid"]) for x in raw[:4]]


def test_sample_is_seeded_and_stable(data_root):
    a = RMB.load(data_root, records.Selection(sets=["pairwise"], sample=0.1, seed=1))
    b = RMB.load(data_root, records.Selection(sets=["pairwise"], sample=0.1, seed=1))
    c = RMB.load(data_root, records.Selection(sets=["pairwise"], sample=0.1, seed=2))
    assert [r.uid for r in a.records] == [r.uid for r in b.records]
    assert [r.uid for r in a.records] != [r.uid for r in c.records]
    assert 0.08 < len(a.records) / 14543 < 0.12


@pytest.mark.parametrize("flag", [
    dict(sets=["pairs"]), dict(sections=["safety"]), dict(limit=0), dict(sample=1.5)])
def test_bad_selection_is_one_clear_error(flag, data_root):
    with pytest.raises(DataError) as err:
        RMB.load(data_root, records.Selection(**flag))
    assert "--" in str(err.value) and "\n" not in str(err.value)


def copy_scenario(data_root, tmp_path, rel):
    dest = tmp_path / "RMB_dataset" / rel
    dest.parent.mkdir(parents=True)
    shutil.copy(data_root / rel, dest)
    return tmp_path / "RMB_dataset", dest


def test_malformed_record_names_file_and_index(data_root, tmp_path):
    root, path = copy_scenario(data_root, tmp_path, "Pairwise_set/Helpfulness/Chat/Discussion.json")
    items = json.loads(path.read_text())
    del items[7]["reject"]
    path.write_text(json.dumps(items))
    with pytest.raises(DataError, match=r"Pairwise_set/Helpfulness/Chat/Discussion.json: record 7: missing field 'reject'"):
        RMB.load(root)


def test_broken_json_names_file(data_root, tmp_path):
    root, path = copy_scenario(data_root, tmp_path, "BoN_set/Harmlessness/S1.json")
    path.write_text(path.read_text()[:1000])
    with pytest.raises(DataError, match="BoN_set/Harmlessness/S1.json: cannot read as JSON"):
        RMB.load(root)


def test_absent_files_and_missing_folder(data_root, tmp_path):
    root, _ = copy_scenario(data_root, tmp_path, "BoN_set/Harmlessness/S1.json")
    ds = RMB.load(root)
    assert ds.scenarios_found == 1 and {r.kind for r in ds.records} == {"bon"}
    with pytest.raises(DataError, match="not found"):
        RMB.load(tmp_path / "nowhere")
    assert RMB.load(tmp_path).root == root  # the folder above RMB_dataset/ (a clone of upstream) reads it
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("")
    with pytest.raises(DataError, match="not an RMB_dataset folder"):
        RMB.load(tmp_path / "notes")


def test_absent_files_against_selection_are_the_callers_to_report(data_root, tmp_path):
    root, _ = copy_scenario(data_root, tmp_path, "BoN_set/Harmlessness/S1.json")
    ds = RMB.load(root, records.Selection(sets=["pairwise"]))
    assert ds.records == [] and ds.files == [] and ds.scenarios_found == 0


@pytest.mark.parametrize("folders", [(), ("Pairwise_set/Helpfulness/Chat", "BoN_set")])
def test_a_root_without_scenario_files_points_at_data_fetch(tmp_path, folders):
    """What a failed download used to leave: `data validate` called it "OK: 0 of 98"."""
    root = tmp_path / "RMB_dataset"
    root.mkdir()
    for folder in folders:
        (root / folder).mkdir(parents=True)
    with pytest.raises(DataError) as err:
        RMB.load(root, records.Selection(sets=["bon"]))
    assert str(err.value) == (
        f"{root}: no RMB scenario files found (run `rmb-judge data fetch`, "
        "or give --data DIR / set RMB_DATA)"
    )


PAIRWISE = "Pairwise_set/Helpfulness/Chat/Discussion.json"
BON = "BoN_set/Harmlessness/S1.json"


def append_escape(path, index, keys, escape):
    """Append the raw JSON escape `escape` to one string field of record `index` in `path`."""
    items = json.loads(path.read_text(encoding="utf-8"))
    target = items[index]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] += "\x00"  # a stand-in json.dumps writes as \u0000, which RMB text lacks
    raw = json.dumps(items, ensure_ascii=False)
    assert raw.count(r"\u0000") == 1
    path.write_text(raw.replace(r"\u0000", escape), encoding="utf-8")


@pytest.mark.parametrize("rel, index, keys, name, escape", [
    (PAIRWISE, 12, ("chosen", "answer"), "chosen.answer", r"\ud800"),
    (PAIRWISE, 3, ("conversation_input", 0, "content"), "conversation_input[0].content", r"\uDFFF"),
    (BON, 5, ("loser_list", 1, "answer"), "loser_list[1].answer", r"\udc00"),
    (BON, 0, ("bon_best", "llm_name"), "bon_best.llm_name", r"\uDbFf"),
])
def test_an_unpaired_surrogate_names_file_record_and_field(
    data_root, tmp_path, rel, index, keys, name, escape
):
    """JSON takes `"\\ud800"`; `validate` passed such a file and `run` then crashed encoding it."""
    root, path = copy_scenario(data_root, tmp_path, rel)
    append_escape(path, index, keys, escape)
    with pytest.raises(DataError) as err:
        RMB.load(root)
    assert str(err.value) == (
        f"{rel}: record {index}: {name} holds an unpaired surrogate ({escape.lower()}), "
        "not valid Unicode"
    )


@pytest.mark.parametrize("escape", [r"\ud83d\ude00", r"\uD83D\uDE00"])
def test_an_escaped_surrogate_pair_loads_as_its_character(data_root, tmp_path, escape):
    root, path = copy_scenario(data_root, tmp_path, PAIRWISE)
    expected = RMB.load(root).records[12].chosen[0].text + "\U0001F600"
    append_escape(path, 12, ("chosen", "answer"), escape)
    assert RMB.load(root).records[12].chosen[0].text == expected
