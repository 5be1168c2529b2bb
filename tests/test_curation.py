"""data.exclude / data.relabel: applied before the split, change its fingerprint, and make
runs trained before them stale."""

import pandas as pd
import pytest

from conftest import make_folder_dataset
from ripik_clf.config import load_config
from ripik_clf.data.curation import apply_curation
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.splits import load_or_make_splits, refuse_other_split, split_record
from ripik_clf.errors import UserError


@pytest.fixture
def data(tmp_path):
    return make_folder_dataset(tmp_path / "data", {"cat": 6, "dog": 6, "fox": 6})


def _config(tmp_path, data, **curation):
    overrides = {"data.path": str(data), "workdir": str(tmp_path / "work")}
    return load_config(None, overrides | {f"data.{k}": str(v) for k, v in curation.items()})


def test_exclude_and_relabel_take_ids_or_paths(tmp_path, data):
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"# reviewed\ncat/img_000.png\n{data / 'dog' / 'img_005.png'}\n")
    relabel = tmp_path / "relabel.csv"
    relabel.write_text("image,label\nfox/img_002.png,dog\n")
    dataset, _ = load_dataset(_config(tmp_path, data, exclude=exclude, relabel=relabel).data)
    assert len(dataset) == 16
    assert not dataset["image"].isin(["cat/img_000.png", "dog/img_005.png"]).any()
    assert dataset.set_index("image").at["fox/img_002.png", "label"] == "dog"
    assert dataset.attrs["curation"]["exclude"]["images"] == ["cat/img_000.png", "dog/img_005.png"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("cat/nope.png\n", "exclude.txt line 1: 'cat/nope.png' is not an image of the dataset"),
        (None, "label 'wolf' is not a class of the dataset (cat, dog, fox)"),
    ],
)
def test_bad_curation_entries_are_refused_in_one_line(tmp_path, data, content, message):
    exclude = tmp_path / "exclude.txt"
    relabel = tmp_path / "relabel.csv"
    exclude.write_text(content or "")
    relabel.write_text("image,label\ncat/img_001.png,wolf\n")
    frame, _ = load_dataset(_config(tmp_path, data).data)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_curation(frame, exclude, None if content else relabel)


def test_curation_changes_the_fingerprint_and_old_runs_are_refused(tmp_path, data):
    plain = _config(tmp_path, data)
    dataset, _ = load_dataset(plain.data)
    splits = load_or_make_splits(dataset, plain.split, plain.workdir)
    trained_on = split_record(splits, plain.split)  # what a run made now records

    relabel = tmp_path / "relabel.csv"
    relabel.write_text("image,label\ncat/img_001.png,dog\n")
    curated = _config(tmp_path, data, relabel=relabel)
    relabelled, _ = load_dataset(curated.data)
    with pytest.raises(UserError, match=r"dataset changed .*0 added, 0 removed, 1 relabelled"):
        load_or_make_splits(relabelled, curated.split, curated.workdir)
    splits = load_or_make_splits(relabelled, curated.split, curated.workdir, resplit=True)
    with pytest.raises(UserError, match="other images or labels"):
        refuse_other_split("original", trained_on, split_record(splits, curated.split))
    saved = pd.read_json(tmp_path / "work" / "splits.json", typ="series")
    assert saved["curation"]["relabel"]["labels"] == {"cat/img_001.png": "dog"}
