"""Values a user types on the command line, by class: run names that are paths or not
names, OS errors from paths the system refuses, empty paths, column names nobody can
name back. Each class has one boundary; each test generates its cases."""

import errno
import os
import string

import pytest
from fuzz_cases import call

import ensemble
from conftest import make_folder_dataset, write_image
from ripik_clf.cli import main as cli
from ripik_clf.config import load_config
from ripik_clf.errors import UserError, exit_on_user_error
from ripik_clf.workdir import check_run_name, run_dir

GOOD_NAMES = ["original", "augmented_fold3", "lite1", "B0-260", "a", "x" * 64, "run.v2", "_x"]


def bad_run_names():
    """Paths in every spelling, empty and invisible names, separators, too long, not text."""
    yield from ["", " ", ".", "..", ".hidden", "../x", "a/../b", "/etc/passwd", "runs/original",
                "a\\b", "~", "~/x", "a b", "a\nb", "a\x00b", "é", "a:b", "x" * 65]  # fmt: skip
    for sep in ("/", "\\", ":", "\t", "*", "?", "[", "$", "%", "\u202e"):
        yield f"run{sep}name"
    yield from (None, 3, ["original"])


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_a_run_name_passes(name, tmp_path):
    assert run_dir(tmp_path, name) == tmp_path / "runs" / name


@pytest.mark.parametrize("name", list(bad_run_names()), ids=repr)
def test_anything_else_is_refused_before_it_becomes_a_folder(name, tmp_path):
    with pytest.raises(UserError, match="run name"):
        check_run_name(name)
    with pytest.raises(UserError, match="run name"):
        run_dir(tmp_path, name)
    if isinstance(name, str) and name != "~":  # "~" is YAML's null: the default run
        with pytest.raises(UserError, match=r"invalid config value train\.run"):
            load_config(overrides={"train.run": name})


@pytest.fixture
def test_folder(tmp_path):
    write_image(tmp_path / "test" / "t0.png", seed=1)
    write_image(tmp_path / "secret.keras.png", seed=2)
    return tmp_path


def member_references():
    """Member names of every command that takes them, built from the bad run names (a
    ``.keras`` path is a file the user names, not a run: read on purpose)."""
    for name in bad_run_names():
        if isinstance(name, str) and name.strip() and "\x00" not in name:
            yield name
    yield from ["original:", ":probe", "original:bogus", "original:full:head", "../x:probe"]


@pytest.mark.parametrize("ref", list(member_references()), ids=repr)
def test_every_command_refuses_a_member_that_is_not_a_run_name(ref, test_folder):
    work = str(test_folder / "work")
    commands = [
        (
            ensemble.main,
            [
                "--workdir",
                work,
                "--test",
                str(test_folder / "test"),
                "--out",
                str(test_folder / "s.csv"),
                "--members",
                ref,
            ],
        ),  # fmt: skip
        (cli.main, ["predict", str(test_folder / "test"), "--workdir", work, "--members", ref]),
    ]
    if ":" not in ref:
        commands.append((cli.main, ["export", ref, "--format", "tflite", "--workdir", work]))
    for main, argv in commands:
        code, line = call(main, argv)
        assert code == 2, (argv, code, line)
        assert line.startswith("error: ") and ("run name" in line or "RUN:PHASE" in line), line
    assert not (test_folder / "s.csv").exists()


@pytest.mark.parametrize("code", sorted(errno.errorcode), ids=errno.errorcode.get)
def test_every_os_error_is_one_line_naming_the_path(code, capsys):
    @exit_on_user_error
    def failing():
        raise OSError(code, os.strerror(code), "/some/where.csv")

    with pytest.raises(SystemExit) as stop:
        failing()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error: ")
    assert "/some/where.csv" in err[0] and os.strerror(code) in err[0]
    assert err[0].startswith("error: cannot write") == (
        code in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
    )


@pytest.mark.parametrize("command", ["augment", "train"])
def test_a_work_directory_the_system_refuses_is_one_line_not_a_traceback(command, tmp_path):
    """A work directory below a plain file passes every check that looks first; the
    OS refuses it when a folder is made: the OSError's own words, with the path."""
    import augment_offline
    import train

    data = make_folder_dataset(tmp_path / "data", {"a": 2, "b": 2})
    (tmp_path / "plain").write_text("x")
    work = tmp_path / "plain" / "w"
    main = {"augment": augment_offline.main, "train": train.main}[command]
    extra = ["--phase", "head"] if command == "train" else ["--set", "augment.flips=none"]
    code, line = call(main, ["--data", str(data), "--workdir", str(work), *extra])
    assert code == 2, line
    assert line.startswith(f"error: {work}") and line.endswith(os.strerror(errno.ENOTDIR)), line


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_predict_refuses_an_empty_input_path(blank, test_folder):
    code, line = call(cli.main, ["predict", str(test_folder / "test"), blank, "--workdir",
                                 str(test_folder / "work")])  # fmt: skip
    assert (code, line) == (2, "error: an empty path among the inputs: name image files or folders")


@pytest.mark.parametrize(
    "out", ["{t}/s/", "{t}/test/", "{t}/test", "{t}/missing/s.csv", "{t}/test/t0.png/s.csv"]
)
def test_ensemble_out_must_name_a_file_in_a_folder(out, test_folder):
    out = out.format(t=test_folder)
    code, line = call(ensemble.main, ["--workdir", str(test_folder / "work"), "--test",
                                      str(test_folder / "test"), "--out", out])  # fmt: skip
    assert code == 2 and line.startswith("error: "), line
    assert not (test_folder / "s").exists()


def test_export_refuses_no_check_and_a_file_as_its_folder(test_folder):
    work = str(test_folder / "work")
    for count in ("0", "-1"):
        code, line = call(cli.main, ["export", "original", "--format", "tflite", "--workdir",
                                     work, "--check-images", count])  # fmt: skip
        assert (code, line) == (2, f"error: --check-images must be 1 or more, got {count}")
    target = test_folder / "test" / "t0.png"
    code, line = call(cli.main, ["export", "original", "--format", "tflite", "--workdir", work,
                                 "--out", str(target)])  # fmt: skip
    assert (code, line) == (2, f"error: --out {target} is a file: name a folder for the export")


def bad_column_names():
    yield from ["", " ", "\t", "\n", "a\nb", "a\x00b", "\u202e", "\x1b[31m"]
    yield from (c for c in string.whitespace)


@pytest.mark.parametrize("name", list(bad_column_names()), ids=repr)
@pytest.mark.parametrize(
    "key", ["data.image_col", "data.label_col", "ensemble.id_col", "ensemble.label_col"]
)
def test_a_column_name_must_be_visible_text(key, name):
    from ripik_clf.config import Config

    config = Config()
    section, field = key.split(".")
    setattr(getattr(config, section), field, name)
    with pytest.raises(UserError, match=rf"invalid config value {key}="):
        config.validate()


def workdirs_inside(root):
    """A work directory inside the folder ``root``, in the spellings a user might type."""
    yield root / "work"
    yield root / "a" / "deeper" / "work"
    yield root
    yield root / "a" / ".." / "work"
    (root.parent / "link_to_root").symlink_to(root)
    yield root.parent / "link_to_root" / "work"


@pytest.mark.parametrize("key", ["data.path", "data.test"])
def test_a_work_directory_inside_the_data_or_test_folder_is_refused(key, tmp_path):
    folder = make_folder_dataset(tmp_path / "photos", {"a": 1, "b": 1})
    for work in workdirs_inside(folder):
        with pytest.raises(UserError, match=rf"is inside {key} {folder}: .*--workdir outside"):
            load_config(overrides={"workdir": str(work), key: str(folder)})
    for outside in (tmp_path / "work", tmp_path / "photos_work", tmp_path / "photos" / ".."):
        load_config(overrides={"workdir": str(outside), key: str(folder)})  # no error
