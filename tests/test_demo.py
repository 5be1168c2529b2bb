import pandas as pd
import pytest
from PIL import Image

from ripik_clf.config import DataConfig
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.demo import ensure_demo_data
from ripik_clf.errors import UserError


def test_demo_data_materializes_once(tmp_path, capsys):
    paths = ensure_demo_data(tmp_path / "demo")
    assert "writing scikit-learn's handwritten digits" in capsys.readouterr().out
    train = sorted(paths["train"].rglob("*.png"))
    test = sorted(paths["test"].glob("*.png"))
    assert len(train) + len(test) == 1797
    assert sorted(p.name for p in paths["train"].iterdir()) == [str(d) for d in range(10)]
    answers = pd.read_csv(paths["answers"], dtype=str)
    assert sorted(answers["image_id"]) == [p.name for p in test]
    assert set(answers["label"]) == {str(d) for d in range(10)}
    with Image.open(train[0]) as image:
        assert image.mode == "RGB" and image.size == (64, 64)
    ensure_demo_data(tmp_path / "demo")
    assert capsys.readouterr().out == ""  # already complete: nothing is redone


def test_no_data_path_is_refused_unless_the_config_asks_for_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no training data: pass --data PHOTOS"):
        load_dataset(DataConfig())
    assert not (tmp_path / "data").exists()  # nothing made
    dataset, skipped = load_dataset(DataConfig(demo=True))
    assert len(dataset) == 1527 and not skipped
    assert (tmp_path / "data" / "demo" / "test_labels.csv").exists()


@pytest.mark.parametrize(
    "script, said",
    [
        (["augment_offline.py"], "no training data"),
        (["train.py", "--phase", "head"], "no training data"),
        (["ensemble.py"], "no test folder"),  # and never the demo's
    ],
)
def test_a_fresh_work_directory_without_data_is_one_line(
    tmp_path, monkeypatch, capsys, script, said
):
    import importlib

    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(script[0].removesuffix(".py")).main
    with pytest.raises(SystemExit) as stop:
        main([*script[1:], "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.strip().splitlines()[-1].startswith(f"error: {said}")
    assert "Traceback" not in err and not (tmp_path / "data").exists()
