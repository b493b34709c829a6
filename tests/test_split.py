from collections import Counter, defaultdict
from pathlib import Path

import pytest

from cxr.data.layout import Record
from cxr.data.split import LeakError, Split, check_no_leak, make_split, read_split_csv, write_split_csv


def records(n_patients=200, given="train", seed_offset=0):
    """Patients with 1-4 images each; a quarter NORMAL, like the real data."""
    out = []
    for p in range(n_patients):
        label = 0 if p % 4 == 0 else 1
        patient = f"im-{p + seed_offset:04d}" if label == 0 else f"person{p + seed_offset}"
        for i in range(1 + p % 4):
            out.append(Record(Path(f"/d/{given}/{patient}_{i}.jpeg"), label, patient, given))
    return out


def sides_of_patients(split):
    sides = defaultdict(set)
    for record, side in split.rows:
        sides[record.patient].add(side)
    return sides


@pytest.mark.parametrize("mode", ["pooled", "official"])
def test_no_patient_on_two_sides(mode):
    split = make_split(records(), mode=mode, seed=1)
    assert all(len(s) == 1 for s in sides_of_patients(split).values())


def test_pooled_proportions_and_stratification():
    data = records(400)
    split = make_split(data, mode="pooled", seed=3)
    total = len(data)
    for side, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        part = split.part(side)
        assert abs(len(part) / total - share) < 0.03, side
        pneumonia_share = sum(r.label for r in part) / len(part)
        overall = sum(r.label for r in data) / total
        assert abs(pneumonia_share - overall) < 0.04, side


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    data = records()
    a = [(str(r.path), s) for r, s in make_split(data, "pooled", seed=7).rows]
    b = [(str(r.path), s) for r, s in make_split(list(reversed(data)), "pooled", seed=7).rows]
    c = [(str(r.path), s) for r, s in make_split(data, "pooled", seed=8).rows]
    assert a == b
    assert a != c


def test_official_keeps_the_given_test_folder():
    data = records(200) + records(40, given="test", seed_offset=1000)
    split = make_split(data, "official", seed=0)
    assert {str(r.path) for r in split.part("test")} == {str(r.path) for r in data if r.given_split == "test"}
    assert len(split.part("val")) > 0
    assert "test/ kept" in split.note


def test_official_without_test_folder_carves_test_by_patient_and_says_so():
    split = make_split(records(200), "official", seed=0)
    assert len(split.part("test")) > 0
    assert "no test/ folder" in split.note


def test_official_drops_train_images_of_test_patients():
    data = records(100) + records(10, given="test")  # same patient names as the first ten
    split = make_split(data, "official", seed=0)
    assert all(len(s) == 1 for s in sides_of_patients(split).values())


def test_byte_identical_files_stay_together():
    data = records(200)
    twin_a, twin_b = data[0], data[-1]
    assert twin_a.patient != twin_b.patient
    keys = {twin_a.path: "same", twin_b.path: "same"}
    for seed in range(5):
        split = make_split(data, "pooled", seed=seed, content_keys=keys)
        side = {str(r.path): s for r, s in split.rows}
        assert side[str(twin_a.path)] == side[str(twin_b.path)]


def test_a_leaking_split_is_refused():
    r1 = Record(Path("/a.jpeg"), 1, "person1", "train")
    r2 = Record(Path("/b.jpeg"), 1, "person1", "train")
    with pytest.raises(LeakError, match="person1"):
        check_no_leak(Split([(r1, "train"), (r2, "test")], "hand-made"))


def test_split_csv_round_trip(tmp_path):
    split = make_split(records(50), "pooled", seed=0)
    write_split_csv(split, tmp_path / "split.csv")
    back = read_split_csv(tmp_path / "split.csv")
    assert [(str(r.path), r.label, r.patient, s) for r, s in back.rows] == [
        (str(r.path), r.label, r.patient, s) for r, s in split.rows
    ]
    assert Counter(s for _, s in back.rows) == Counter(s for _, s in split.rows)
