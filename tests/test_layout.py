import pytest

from conftest import make_layout, write_image
from cxr.data.layout import discover, patient_id
from cxr.errors import DataError


@pytest.mark.parametrize(
    "name, patient",
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),  # bacteria and virus of one number: one patient
        ("person447_virus_921_1.jpeg", "person447"),  # the one irregular name
        ("IM-0115-0001.jpeg", "im-0115"),
        ("IM-0608-0001-0001.jpeg", "im-0608"),
        ("NORMAL2-IM-1427-0001.jpeg", "normal2-im-1427"),
        ("NORMAL2-IM-0648-0001-0002.jpeg", "normal2-im-0648"),
        ("scan_xyz.png", "scan_xyz"),  # unknown pattern: its own patient
    ],
)
def test_patient_id_for_every_naming_pattern(name, patient):
    assert patient_id(name) == patient


def test_normal2_and_plain_im_are_different_patients():
    assert patient_id("IM-0115-0001.jpeg") != patient_id("NORMAL2-IM-0115-0001.jpeg")


def test_discover_reads_labels_from_folders(tmp_path):
    make_layout(tmp_path, splits=("train", "val", "test"), per_class=4)
    (tmp_path / "train" / "NORMAL" / "notes.txt").write_text("not an image")
    records = discover(tmp_path)
    assert len(records) == 3 * 2 * 4
    assert {r.given_split for r in records} == {"train", "val", "test"}
    for r in records:
        assert r.label == (1 if r.path.parent.name == "PNEUMONIA" else 0)


def test_discover_without_split_folders_reads_one_labelled_set(tmp_path):
    write_image(tmp_path / "NORMAL" / "IM-0001-0001.png")
    write_image(tmp_path / "PNEUMONIA" / "person1_virus_1.png")
    records = discover(tmp_path)
    assert sorted(r.label for r in records) == [0, 1]


def test_discover_empty_folder_says_what_it_expected(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        discover(tmp_path)
