"""The work directory's records: one reader and one writer each."""

import json

import pytest

from ripik_clf import workdir as wd
from ripik_clf.errors import UserError


def test_run_record_round_trips_and_keeps_the_file_format(tmp_path):
    record = wd.RunRecord(
        classes=["a", "b"], image_size=32, backbone="efficientnet_lite0", weights="none",
        variant="augmented", fold=2, split={"folds": 3}, held_out=["a/1.png"],
        trained_with_flips=True, temperature={"full": 1.5},
    )  # fmt: skip
    wd.write_run_record(tmp_path, record)
    saved = json.loads((tmp_path / wd.RUN_JSON).read_text())
    assert saved["model"] == "augmented" and "variant" not in saved  # older readers' key
    assert wd.read_run_record(tmp_path) == record
    assert record.temperature_of(tmp_path / "full.keras") == 1.5
    assert record.temperature_of(tmp_path / "head.keras") == 1.0


def test_a_missing_or_broken_run_record_is_none_or_one_line(tmp_path):
    assert wd.read_run_record(tmp_path) is None
    with pytest.raises(UserError, match="no run.json beside .*full.keras"):
        wd.read_run_record(tmp_path, for_model=tmp_path / "full.keras")
    (tmp_path / wd.RUN_JSON).write_text('{"classes": ["a"]}')  # no image size
    with pytest.raises(UserError, match="is not a run record"):
        wd.read_run_record(tmp_path)


def test_member_names_map_to_model_files(tmp_path):
    assert wd.model_file(tmp_path, "original") == tmp_path / "runs/original/full.keras"
    assert wd.model_file(tmp_path, "original:probe") == tmp_path / "runs/original/probe.keras"
    with pytest.raises(UserError, match="RUN:PHASE"):
        wd.model_file(tmp_path, "original:best")


def test_export_falls_back_to_the_head_model(tmp_path):
    from ripik_clf.predict.export import resolve_model_file

    run = wd.run_dir(tmp_path, "original")
    with pytest.raises(UserError, match="no trained model for run 'original'"):
        resolve_model_file(tmp_path, "original")
    run.mkdir(parents=True)
    (run / "head.keras").write_bytes(b"head")
    assert resolve_model_file(tmp_path, "original") == run / "head.keras"
    (run / "full.keras").write_bytes(b"full")
    assert resolve_model_file(tmp_path, "original") == run / "full.keras"


def test_validation_probabilities_round_trip(tmp_path):
    wd.write_val_probabilities(tmp_path, "head", ["x.png", "y.png"], ["a", "b"],
                               [[0.25, 0.75], [1.0, 0.0]])  # fmt: skip
    read = wd.read_val_probabilities(tmp_path, "head", ["a", "b"])
    assert set(read) == {"x.png", "y.png"} and list(read["x.png"]) == [0.25, 0.75]
    assert wd.read_val_probabilities(tmp_path, "full", ["a", "b"]) is None
