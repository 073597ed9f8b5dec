import json
import shutil
from collections import Counter

import pytest

from rmb_judge import records
from rmb_judge.errors import DataError


def test_full_dataset_matches_provenance(data_root):
    """The counts PROVENANCE.md states for the shared copy (46 pairwise + 49 BoN files)."""
    ds = records.load(data_root)
    sets = Counter(r.set for r in ds.records)
    assert sets == {"pairwise": 14543, "bon": 3786}
    assert Counter(r.section_key for r in ds.records if r.set == "pairwise") == {
        "pairwise_helpfulness": 8456, "pairwise_harmlessness": 6087}
    assert Counter(r.section_key for r in ds.records if r.set == "bon") == {
        "bon_helpfulness": 2109, "bon_harmlessness": 1677}
    assert sum(len(r.others) for r in ds.records if r.set == "bon") == 8714
    turns = Counter(len(r.conversation) == 1 for r in ds.records)
    assert turns == {True: 15768, False: 2561}
    assert ds.scenarios_found == 95
    # category_path is the file path without .json, uids are strings
    for r in ds.records[:50]:
        assert r.file.removesuffix(".json") == r.category_path


def test_selection_flags(data_root):
    sel = records.Selection(sets=["bon"], sections=["helpfulness"], scenarios=["*Chat*"], limit=4)
    ds = records.load(data_root, sel)
    paths = Counter(r.category_path for r in ds.records)
    assert set(paths) == {f"BoN_set/Helpfulness/Chat/{n}" for n in
                          ("Casual Conversation", "Discussion", "Supportive Conversation")}
    assert set(paths.values()) == {4}
    # the first N records of each file, in file order
    raw = json.loads((data_root / "BoN_set/Helpfulness/Chat/Discussion.json").read_text())
    assert [r.uid for r in ds.records if r.category_path.endswith("Discussion")] == [
        str(x["bon_uid"]) for x in raw[:4]]


def test_sample_is_seeded_and_stable(data_root):
    a = records.load(data_root, records.Selection(sets=["pairwise"], sample=0.1, seed=1))
    b = records.load(data_root, records.Selection(sets=["pairwise"], sample=0.1, seed=1))
    c = records.load(data_root, records.Selection(sets=["pairwise"], sample=0.1, seed=2))
    assert [r.uid for r in a.records] == [r.uid for r in b.records]
    assert [r.uid for r in a.records] != [r.uid for r in c.records]
    assert 0.08 < len(a.records) / 14543 < 0.12


@pytest.mark.parametrize("flag", [
    dict(sets=["pairs"]), dict(sections=["safety"]), dict(limit=0), dict(sample=1.5)])
def test_bad_selection_is_one_clear_error(flag):
    with pytest.raises(DataError) as err:
        records.Selection(**flag)
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
        records.load(root)


def test_broken_json_names_file(data_root, tmp_path):
    root, path = copy_scenario(data_root, tmp_path, "BoN_set/Harmlessness/S1.json")
    path.write_text(path.read_text()[:1000])
    with pytest.raises(DataError, match="BoN_set/Harmlessness/S1.json: cannot read as JSON"):
        records.load(root)


def test_absent_files_and_missing_folder(data_root, tmp_path):
    root, _ = copy_scenario(data_root, tmp_path, "BoN_set/Harmlessness/S1.json")
    ds = records.load(root)
    assert ds.scenarios_found == 1 and {r.set for r in ds.records} == {"bon"}
    with pytest.raises(DataError, match="not found"):
        records.load(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not an RMB_dataset folder"):
        records.load(tmp_path)
