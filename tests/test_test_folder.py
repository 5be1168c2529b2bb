"""A test folder (or a folder given to ``predict``) is read by the training data's rule:
an image file unusable by name or place (a name that is not UTF-8 text, a broken link, a
link leaving the folder) is never read and never dropped unsaid: ensemble.py refuses it
by name or (``--on-bad-image skip``) lists it beside the submission, predict lists it."""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from fuzz_cases import call
from test_ensemble_run import run, setup  # noqa: F401 - the trained members, reused

import ensemble
from conftest import write_image
from ripik_clf.cli import main as cli
from ripik_clf.data.dataset import scan_image_folder
from ripik_clf.predict import submission


def unusable_entries():
    """(name, make(folder, outside), reason fragment): one per way a file is unusable."""

    def not_utf8(folder, outside):
        write_image(folder / os.fsdecode(b"bad\xffname.png"), seed=3)

    def control_character(folder, outside):
        write_image(folder / "tab\tname.png", seed=4)

    def broken_link(folder, outside):
        (folder / "broken.png").symlink_to(outside / "missing.png")

    def link_outside(folder, outside):
        (folder / "outside.png").symlink_to(outside / "secret.png")

    def nested_link_outside(folder, outside):
        (folder / "deeper").mkdir(exist_ok=True)
        (folder / "deeper" / "outside.jpg").symlink_to(outside / "secret.png")

    def fifo(folder, outside):  # reading a pipe blocks: it must never be opened
        os.mkfifo(folder / "pipe.png")

    def link_to_fifo(folder, outside):
        os.mkfifo(folder / ".pipe")
        (folder / "piped.jpg").symlink_to(folder / ".pipe")

    yield "not UTF-8", not_utf8, "not valid UTF-8"
    yield "fifo", fifo, "not a regular file"
    yield "link to a fifo", link_to_fifo, "not a regular file"
    yield "control character", control_character, "control character"
    yield "broken link", broken_link, "broken symbolic link"
    yield "link outside", link_outside, "links outside"
    yield "nested link outside", nested_link_outside, "links outside"


CASES = list(unusable_entries())


def _folders(root):
    folder, outside = root / "test", root / "outside"
    write_image(folder / "good.png", seed=1)
    write_image(outside / "secret.png", seed=2)
    (folder / "inside_link.png").symlink_to(folder / "good.png")  # inside: used
    (folder / ".hidden.png").write_bytes(b"")  # hidden: not a test image, by the rule
    (folder / "notes.txt").write_text("not an image")
    return folder, outside


@pytest.mark.parametrize("name,make,reason", CASES, ids=[c[0] for c in CASES])
def test_an_unusable_file_is_listed_with_its_reason_never_used(name, make, reason, tmp_path):
    folder, outside = _folders(tmp_path)
    make(folder, outside)
    for ids, unusable in (submission.test_images(folder), scan_image_folder(folder)):
        assert ids == ["good.png", "inside_link.png"]
        assert len(unusable) == 1 and reason in unusable[0][1], unusable
        assert unusable[0][0].encode("utf-8")  # printable and writable, whatever the name


def test_a_link_outside_is_used_when_allowed(tmp_path):
    folder, outside = _folders(tmp_path)
    (folder / "outside.png").symlink_to(outside / "secret.png")
    ids, unusable = submission.test_images(folder, allow_outside_root=True)
    assert ids == ["good.png", "inside_link.png", "outside.png"] and unusable == []


def test_a_folder_of_only_unusable_files_is_refused_naming_one(tmp_path):
    folder, outside = tmp_path / "test", tmp_path / "outside"
    write_image(outside / "secret.png", seed=2)
    folder.mkdir()
    (folder / "outside.png").symlink_to(outside / "secret.png")
    with pytest.raises(Exception, match=r"no usable image files .*outside\.png: links outside"):
        submission.test_images(folder)


@pytest.fixture
def bad_test_folder(setup):  # noqa: F811 - the fixture imported above
    """The trained setup's test folder plus one file of each unusable kind."""
    folder = setup / "test_unusable"
    shutil.copytree(setup / "test", folder, symlinks=True)
    outside = setup / "outside"
    write_image(outside / "secret.png", seed=2)
    for _, make, _ in CASES:
        make(folder, outside)
    yield folder
    shutil.rmtree(folder)


def test_ensemble_refuses_or_lists_every_unusable_test_image(setup, bad_test_folder, capsys):  # noqa: F811
    code, line = call(
        ensemble.main,
        ["--data", str(setup / "data"), "--workdir", str(setup / "work"), "--test",
         str(bad_test_folder), "--out", str(setup / "u.csv"), "--members", "original"],
    )  # fmt: skip
    assert code == 2 and "cannot be read" in line and f"({len(CASES)} unreadable)" in line
    assert not (setup / "u.csv").exists()
    run(setup, "--test", str(bad_test_folder), "--on-bad-image", "skip", out="u.csv")
    submitted = set(pd.read_csv(setup / "u.csv")["image_id"])
    assert submitted == set(submission.test_images(setup / "test")[0])  # every usable one
    skipped = pd.read_csv(setup / "u_skipped.csv")
    assert len(skipped) == len(CASES)
    for _, _, reason in CASES:
        assert skipped["reason"].str.contains(reason).any(), reason


def test_predict_lists_every_unusable_image_of_a_folder(setup, bad_test_folder, capsys):  # noqa: F811
    argv = ["predict", str(bad_test_folder), "--json", "--workdir", str(setup / "work"),
            "--members", "original"]  # fmt: skip
    try:
        cli.main(argv)
    except SystemExit as stop:
        assert stop.code in (0, None)
    result = json.loads(capsys.readouterr().out)
    predicted = {Path(p["image"]).name for p in result["predictions"]}
    assert "outside.png" not in predicted and "outside.jpg" not in predicted
    assert len(result["unreadable"]) == len(CASES)


def test_predict_names_a_folder_without_a_usable_image(tmp_path):
    from ripik_clf.predict.ensemble import image_files

    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match=r"^no usable image files in .*empty$"):
        image_files([tmp_path / "empty"])
    folder, outside = _folders(tmp_path)
    for name in ("good.png", "inside_link.png"):
        (folder / name).unlink()
    (folder / "broken.png").symlink_to(outside / "missing.png")
    with pytest.raises(Exception, match=r"\(1 unusable, first .*broken\.png: broken symbolic"):
        image_files([folder])
