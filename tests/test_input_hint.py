"""A larger input is suggested when the photos have the pixels, never imposed."""

import pytest
from PIL import Image

from ripik_clf.data.images import median_shorter_side
from ripik_clf.models.registry import larger_input_hint
from ripik_clf.train.head import suggest_larger_input


@pytest.mark.parametrize(
    "configured,size,side,expected",
    [
        (None, 224, 256, 256),  # aerial21's 256 px tiles: the measured case
        (None, 224, 255, None),  # not a whole step above the input
        (None, 224, 192, None),  # clothing8, flowers5: shorter sides under 224
        (None, 224, 300, 288),  # multiples of 32
        (None, 224, 4000, 384),  # camera photos: capped where cost was not measured
        (224, 224, 4000, None),  # an input size the user chose is theirs
        (None, 600, 4000, None),  # the cap below the native size: nothing to suggest
        (None, 224, None, None),  # no readable photo
    ],
)
def test_hint_rule(configured, size, side, expected):
    assert larger_input_hint(configured, size, side) == expected


def _photos(folder, sizes):
    folder.mkdir(exist_ok=True)
    paths = []
    for k, (w, h) in enumerate(sizes):
        paths.append(folder / f"{k}.jpg")
        Image.new("RGB", (w, h), (k, 0, 0)).save(paths[-1])
    return [str(p) for p in paths]


def test_median_shorter_side_reads_headers(tmp_path):
    paths = _photos(tmp_path / "p", [(300, 260), (256, 400), (500, 270), (40, 40)])
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert median_shorter_side(paths + [str(tmp_path / "broken.jpg")]) == 258  # 40,256,260,270
    assert median_shorter_side([str(tmp_path / "broken.jpg")]) is None
    many = [p for p in paths for _ in range(100)]  # 400 files: every 100th is read
    assert median_shorter_side(many, sample=4) == 258


def test_the_head_phase_says_it_once_and_only_when_true(tmp_path, capsys):
    large = _photos(tmp_path / "large", [(320, 256)] * 5)
    small = _photos(tmp_path / "small", [(256, 192)] * 5)
    suggest_larger_input(None, 224, large)
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "--set train.image_size=256" in err
    suggest_larger_input(None, 224, small)
    suggest_larger_input(256, 256, large)
    assert capsys.readouterr().err == ""


def test_a_head_phase_of_two_runs_says_it_once(tmp_path, capsys):
    import augment_offline
    import train
    from conftest import QUICK_COPIES, make_folder_dataset

    data = make_folder_dataset(tmp_path / "data", {"cat": 4, "dog": 4}, size=256)
    work = str(tmp_path / "work")
    augment_offline.main(["--data", str(data), "--workdir", work, *QUICK_COPIES,
                          "--set", "split.val_fraction=0.5"])  # fmt: skip
    capsys.readouterr()
    code = train.main(["--phase", "head", "--workdir", work, "--set", "train.weights=none",
                       "--set", "train.head_epochs=1"])  # fmt: skip
    assert code in (0, None)
    err = capsys.readouterr().err
    assert err.count("--set train.image_size=256") == 1  # two runs (original, augmented)
