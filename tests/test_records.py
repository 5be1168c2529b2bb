"""Readers that never trust what they read: model files, exported models and their
preprocessing specs, damaged by a kill, a disk fault or a hand edit."""

import pytest

from ripik_clf.errors import UserError
from ripik_clf.locks import load_model_file, save_model_atomically
from ripik_clf.predict.export import find_preprocessing_spec, run_export


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    path = tmp_path_factory.mktemp("m") / "full.keras"
    save_model_atomically(model, path)
    return path


@pytest.mark.parametrize("cut", [0, 10, 0.5, -1])
def test_a_cut_model_file_is_one_line_naming_it(model_file, tmp_path, cut):
    data = model_file.read_bytes()
    end = int(len(data) * cut) if isinstance(cut, float) else cut
    damaged = tmp_path / "full.keras"
    damaged.write_bytes(data[:end])
    with pytest.raises(
        UserError, match=r"full.keras (is not a whole .keras file|cannot be loaded)"
    ):
        load_model_file(damaged)


def test_a_whole_model_file_loads(model_file):
    assert load_model_file(model_file).output_shape == (None, 3)
    with pytest.raises(UserError, match="no model file at"):
        load_model_file(model_file.parent / "nothing.keras")


@pytest.mark.parametrize(
    "spec",
    ['{"files": ["m.tflite"], "inp', '{"files": ["m.tflite"]}', "[]",
     '{"files": ["m.tflite"], "input": {"shape": [null, "x", 1, 3]}, "classes": ["a"]}'],
    ids=["cut", "no input", "a list", "size not a number"],
)  # fmt: skip
def test_a_damaged_preprocessing_spec_is_one_line_naming_it(tmp_path, spec):
    (tmp_path / "m.tflite").write_bytes(b"")
    (tmp_path / "m_preprocessing.json").write_text(spec)
    with pytest.raises(UserError, match=r"m_preprocessing.json is damaged"):
        find_preprocessing_spec(tmp_path / "m.tflite")


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_a_damaged_exported_model_is_one_line_naming_it(tmp_path, fmt):
    import numpy as np

    if fmt == "savedmodel":
        path = tmp_path / "m_savedmodel"
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    else:
        path = tmp_path / "m.tflite"
        path.write_bytes(b"TFL3" + bytes(60))
    with pytest.raises(UserError, match=rf"{path.name} cannot be run as a {fmt} model"):
        run_export(path, fmt, np.zeros((1, 32, 32, 3), "float32"))


def test_exported_with_members_or_tta_is_refused(tmp_path):
    from ripik_clf.config import load_config
    from ripik_clf.stages import run_predict

    config = load_config(None, {"workdir": str(tmp_path / "w")})
    with pytest.raises(UserError, match="--exported runs the exported model as it is"):
        run_predict(config, [str(tmp_path)], exported=str(tmp_path / "m.tflite"), tta="flip")
    with pytest.raises(UserError, match="--members and --tta"):
        run_predict(config, [str(tmp_path)], exported=str(tmp_path / "m.tflite"), members=["a"])
