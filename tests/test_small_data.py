"""Too little data is one line, never a traceback: classes of one or two images through
the head and probe phases (Keras' empty validation, the probe's cross-validation)."""

import pytest

import train
from conftest import make_folder_dataset

CASES = {  # class image counts -> trains (True) or refuses in one line (False)
    "one image each": ({"a": 1, "b": 1, "c": 1}, False),
    "two singles and a pair": ({"a": 1, "b": 1, "c": 2}, True),
    "a class of two": ({"a": 2, "b": 6, "c": 6}, True),
    "a single beside larger ones": ({"a": 1, "b": 5, "c": 5}, True),
}
RUNS = [("one image each", "head"), ("one image each", "probe"),
        ("two singles and a pair", "probe"), ("a class of two", "head"),
        ("a single beside larger ones", "probe")]  # fmt: skip


@pytest.mark.parametrize("case, phase", RUNS)
def test_small_classes_train_or_are_refused_in_one_line(tmp_path, case, phase, capsys):
    counts, trains = CASES[case]
    data = make_folder_dataset(tmp_path / "data", counts)
    argv = ["--phase", phase, "--data", str(data), "--workdir", str(tmp_path / "w"),
            "--model", "original", "--image-size", "32", "--set", "train.weights=none",
            "--set", "train.head_epochs=1"]  # fmt: skip
    if trains:
        train.main(argv)
        assert (tmp_path / "w" / "runs" / "original" / f"{phase}.keras").exists()
    else:
        with pytest.raises(SystemExit) as stop:
            train.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "no validation images" in err and "Traceback" not in err
