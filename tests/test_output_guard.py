"""One output guard: an output path that is, or is inside, anything the run reads or the
work directory owns is refused before any work, and nothing there changes."""

import pytest

import ensemble
from conftest import make_folder_dataset
from ripik_clf import workdir as wd
from ripik_clf.cli.main import main as cli

OWNED = ["splits.csv", "splits.json", "augmented", "augmented/manifest.csv", "runs",
         "runs/original/run.json", "report", "report/ensemble.json", "features/x/y.npy",
         "predictions", "audit/audit.md"]  # fmt: skip


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    data = make_folder_dataset(root / "data", {"a": 3, "b": 3})
    test = make_folder_dataset(root / "testsrc", {"t": 2}) / "t"
    work = root / "w"
    for rel in ("splits.csv", "report/ensemble.json", "runs/original/run.json"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("kept")
    return root, data, test, work


def _outputs(place):
    root, data, test, work = place
    yield from (work / rel for rel in OWNED)
    yield from (data / "a" / "sub.csv", data / "sub.csv", test / "sub.csv", test)
    yield work / "splits_probabilities.csv"  # not owned: allowed (the control case)


@pytest.mark.parametrize("index", range(len(OWNED) + 5))
def test_ensemble_out_is_refused_on_anything_read_or_owned(place, index, capsys):
    root, data, test, work = place
    out = list(_outputs(place))[index]
    before = {p: p.read_text() for p in work.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(SystemExit) as stop:
        ensemble.main(["--data", str(data), "--test", str(test), "--workdir", str(work),
                       "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    if out.name == "splits_probabilities.csv":  # allowed: fails later, for another reason
        assert "is inside" not in err
    else:
        assert stop.value.code == 2 and "is inside" in err and "Traceback" not in err, err
    assert {p: p.read_text() for p in before} == before  # nothing replaced


@pytest.mark.parametrize("rel", ["runs", "report", "splits.csv"])
def test_export_out_is_refused_inside_the_work_directorys_records(place, rel, capsys):
    root, data, test, work = place
    with pytest.raises(SystemExit) as stop:
        cli(["export", "original", "--format", "savedmodel", "--workdir", str(work), "--out",
             str(work / rel)])  # fmt: skip
    assert stop.value.code == 2 and "is inside" in capsys.readouterr().err
    assert (work / "splits.csv").read_text() == "kept"


def test_owned_paths_name_every_record_folder():
    names = {p.name for p in wd.owned_paths("w")}
    assert {"splits.csv", "splits.json", "augmented", "runs", "report", "predictions"} <= names


LINKED = ["runs", "report", "predictions", "augmented", "features", "audit", "export",
          "runs/original"]  # fmt: skip


@pytest.mark.parametrize("rel", LINKED)
def test_a_work_folder_linked_outside_is_refused_before_any_stage_writes(tmp_path, rel, capsys):
    data = make_folder_dataset(tmp_path / "data", {"a": 3, "b": 3})
    work, elsewhere = tmp_path / "w", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (work / rel).parent.mkdir(parents=True, exist_ok=True)
    (work / rel).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SystemExit) as stop:
        ensemble.main(
            ["--data", str(data), "--workdir", str(work), "--out", str(tmp_path / "s.csv")]
        )
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "outside the work directory" in err and rel in err
    assert not any(elsewhere.iterdir())  # nothing was written there
    (work / rel).unlink()
    (work / rel).mkdir()  # the same folder, its own: that check passes
    wd.check_own_folders(work)
