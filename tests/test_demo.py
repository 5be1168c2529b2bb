import pandas as pd
from PIL import Image

from ripik_clf.config import DataConfig
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.demo import ensure_demo_data


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


def test_no_data_path_means_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset, skipped = load_dataset(DataConfig())
    assert len(dataset) == 1527 and not skipped
    assert (tmp_path / "data" / "demo" / "test_labels.csv").exists()
