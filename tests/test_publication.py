"""Files published together (atomic.publication): staged, then renamed after a journal;
an error publishes none, a kill during the renames is finished by the next reader."""

import json
import os

import pytest

from ripik_clf.atomic import atomic_write_text, finish_publication, publication, written
from ripik_clf.errors import UserError

NAMES = ("sub.csv", "sub_probabilities.csv", "report.md", "ensemble.json")


def _old_set(tmp_path):
    for name in NAMES:
        (tmp_path / name).write_text(f"old {name}")
    return tmp_path / ".publish.json"


def _contents(tmp_path):
    return {name: (tmp_path / name).read_text() for name in NAMES}


def test_nothing_changes_until_the_block_ends_then_everything_does(tmp_path):
    journal = _old_set(tmp_path)
    with publication(journal):
        for name in NAMES:
            atomic_write_text(tmp_path / name, f"new {name}")
            assert written(tmp_path / name).read_text() == f"new {name}"  # staged
        assert _contents(tmp_path) == {n: f"old {n}" for n in NAMES}
    assert _contents(tmp_path) == {n: f"new {n}" for n in NAMES}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)  # no journal, no stage


@pytest.mark.parametrize("failing", range(len(NAMES)))
def test_an_error_while_staging_publishes_none(tmp_path, failing):
    journal = _old_set(tmp_path)
    with pytest.raises(RuntimeError), publication(journal):
        for k, name in enumerate(NAMES):
            if k == failing:
                raise RuntimeError("the report could not be drawn")
            atomic_write_text(tmp_path / name, f"new {name}")
    assert _contents(tmp_path) == {n: f"old {n}" for n in NAMES}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


@pytest.mark.parametrize("folder", NAMES)
def test_a_target_that_is_a_folder_publishes_none(tmp_path, folder):
    journal = _old_set(tmp_path)
    (tmp_path / folder).unlink()
    (tmp_path / folder).mkdir()
    with pytest.raises(UserError, match="is a folder"), publication(journal):
        for name in NAMES:
            atomic_write_text(tmp_path / name, f"new {name}")
    others = [n for n in NAMES if n != folder]
    assert all((tmp_path / n).read_text() == f"old {n}" for n in others)
    assert not [p for p in tmp_path.iterdir() if ".staged" in p.name or "publish" in p.name]


@pytest.mark.parametrize("renamed", range(len(NAMES) + 1))
def test_a_kill_after_k_renames_is_finished_by_the_next_reader(tmp_path, monkeypatch, renamed):
    """Every moment of the commit: the journal written and ``renamed`` of the renames
    done when the process died; finishing gives the whole new set."""
    journal = _old_set(tmp_path)
    real_replace, calls = os.replace, []

    def dies_after_k(src, dst, *args, **kwargs):
        if str(dst).endswith(".publish.json"):  # the journal's own commit
            return real_replace(src, dst, *args, **kwargs)
        if len(calls) == renamed:
            raise KeyboardInterrupt  # stands in for the kill: nothing after it runs
        calls.append(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", dies_after_k)
    try:
        with publication(journal):
            for name in NAMES:
                atomic_write_text(tmp_path / name, f"new {name}")
    except KeyboardInterrupt:
        assert renamed < len(NAMES)  # killed inside the renames
    monkeypatch.setattr(os, "replace", real_replace)
    if renamed < len(NAMES):
        assert journal.exists()
        assert finish_publication(journal) is True
    assert _contents(tmp_path) == {n: f"new {n}" for n in NAMES}
    assert not journal.exists() and finish_publication(journal) is False


def test_a_kill_before_the_journal_leaves_the_old_set(tmp_path):
    """Staged files without a journal are never published; the next publication of the
    same targets writes over them."""
    journal = _old_set(tmp_path)
    (tmp_path / ".sub.csv.staged").write_text("half")
    assert finish_publication(journal) is False
    assert _contents(tmp_path) == {n: f"old {n}" for n in NAMES}
    with publication(journal):
        atomic_write_text(tmp_path / "sub.csv", "new")
    assert (tmp_path / "sub.csv").read_text() == "new"
    assert not (tmp_path / ".sub.csv.staged").exists()


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '[["/etc/passwd", "/tmp/x"]]', '{"a": 1}'])
def test_a_journal_edited_by_hand_is_set_aside_not_followed(tmp_path, capsys, text):
    journal = _old_set(tmp_path)
    journal.write_text(text)
    assert finish_publication(journal) is False
    assert "not a publication journal" in capsys.readouterr().err
    assert _contents(tmp_path) == {n: f"old {n}" for n in NAMES}
    assert not journal.exists() and journal.with_name(".publish.json.damaged").exists()


def test_the_journal_names_staged_files_and_targets(tmp_path, monkeypatch):
    journal = _old_set(tmp_path)
    seen = []
    real = finish_publication.__globals__["finish_publication"]

    def look(path):
        seen.append(json.loads(path.read_text()))
        return real(path)

    monkeypatch.setitem(finish_publication.__globals__, "finish_publication", look)
    with publication(journal):
        atomic_write_text(tmp_path / "sub.csv", "new")
    ((staged, target),) = seen[0]
    assert staged.endswith(".sub.csv.staged") and target == str(tmp_path / "sub.csv")


def test_a_full_disk_at_the_commit_point_leaves_the_old_set_and_no_staged_file(
    tmp_path, monkeypatch
):
    """The journal is the last write: if the disk fills there, nothing was renamed, and
    the staged files (the disk space the new set took) are removed, not left behind."""
    import errno

    import ripik_clf.atomic as atomic

    journal = _old_set(tmp_path)
    original = atomic.atomic_write_text

    def full_at_the_journal(path, text):
        if path == journal:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, text)

    monkeypatch.setattr(atomic, "atomic_write_text", full_at_the_journal)
    with pytest.raises(OSError, match="No space left"), publication(journal):
        for name in NAMES:
            atomic.atomic_write_text(tmp_path / name, f"new {name}")
    assert _contents(tmp_path) == {n: f"old {n}" for n in NAMES}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
