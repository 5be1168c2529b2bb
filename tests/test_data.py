import pandas as pd
import pytest
from PIL import Image

from conftest import make_folder_dataset, png_bomb_header, write_image
from ripik_clf.data.dataset import class_names, discover
from ripik_clf.errors import UserError


def test_folder_discovery(small_dataset):
    dataset, skipped = discover(small_dataset)
    assert len(dataset) == 24 and skipped == []
    assert class_names(dataset) == ["cat", "dog", "fox"]
    assert dataset["image"].tolist() == sorted(dataset["image"])
    assert dataset["image"].iloc[0] == "cat/img_000.png"


def test_bad_files_are_listed_not_fatal(small_dataset):
    (small_dataset / "cat" / "empty.jpg").write_bytes(b"")
    (small_dataset / "cat" / "notes.jpg").write_text("text")
    Image.new("RGB", (16, 16)).save(small_dataset / "dog" / "icon.ico")
    png_bomb_header(small_dataset / "dog" / "bomb.png")
    (small_dataset / "stray.png").write_bytes(b"")
    (small_dataset / "fox" / ".DS_Store").write_text("hidden files are ignored")
    dataset, skipped = discover(small_dataset)
    assert len(dataset) == 24
    reasons = {p.split("/")[-1]: r for p, r in skipped}
    assert set(reasons) == {"empty.jpg", "notes.jpg", "icon.ico", "bomb.png", "stray.png"}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.jpg"]
    assert "'.ico'" in reasons["icon.ico"] and "too large" in reasons["bomb.png"]
    assert "class folder" in reasons["stray.png"]


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda root: None, "data path not found"),
        (lambda root: root.mkdir(), "no class folders"),
        (lambda root: (root / "cat").mkdir(parents=True), "has no image files"),
    ],
    ids=["missing", "empty", "empty-class"],
)
def test_folder_errors(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(UserError, match=message):
        discover(root)


def test_data_path_that_is_neither_folder_nor_csv(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UserError, match="folder of class folders or a .csv"):
        discover(tmp_path / "a.txt")


def test_class_with_only_bad_files_is_an_error(small_dataset):
    (small_dataset / "emu").mkdir()
    (small_dataset / "emu" / "x.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="class 'emu' has no usable image"):
        discover(small_dataset)


def _csv_dataset(tmp_path, rows, columns=("file", "species")):
    for name, _ in rows:
        if not (tmp_path / "imgs" / name).exists():
            write_image(tmp_path / "imgs" / name)
    csv = tmp_path / "train.csv"
    pd.DataFrame(rows, columns=list(columns)).to_csv(csv, index=False)
    return csv


def test_csv_discovery(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("sub/b.png", "y"), ("c.png", "x")])
    dataset, _ = discover(csv, image_col="file", label_col="species", image_root=tmp_path / "imgs")
    assert dataset["image"].tolist() == ["a.png", "c.png", "sub/b.png"]
    assert dataset["label"].tolist() == ["x", "x", "y"]


def test_csv_missing_column(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x")])
    with pytest.raises(UserError, match="no column 'label'.*file, species"):
        discover(csv, image_col="file", image_root=tmp_path / "imgs")


def test_csv_missing_file(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x")])
    (tmp_path / "imgs" / "a.png").unlink()
    with pytest.raises(UserError, match="1 listed file.*do not exist.*a.png"):
        discover(csv, image_col="file", label_col="species", image_root=tmp_path / "imgs")


def test_csv_duplicate_rows(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("b.png", "y"), ("a.png", "y")])
    with pytest.raises(UserError, match="'a.png' is listed more than once .*rows 1, 3"):
        discover(csv, image_col="file", label_col="species", image_root=tmp_path / "imgs")


def test_csv_empty_label(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("b.png", "")])
    with pytest.raises(UserError, match="empty 'species' in data row 2"):
        discover(csv, image_col="file", label_col="species", image_root=tmp_path / "imgs")


def test_csv_unknown_format_listed(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("b.png", "x")])
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / "b.png", format="ICO")
    dataset, skipped = discover(
        csv, image_col="file", label_col="species", image_root=tmp_path / "imgs"
    )
    assert dataset["image"].tolist() == ["a.png"]
    assert "unsupported format ICO" in skipped[0][1]


def test_unicode_class_and_file_names(tmp_path):
    root = make_folder_dataset(tmp_path / "d", {"chat noir": 2, "犬": 2})
    write_image(root / "犬" / "my photo ü.png")
    dataset, skipped = discover(root)
    assert len(dataset) == 5 and not skipped
    assert "犬/my photo ü.png" in set(dataset["image"])


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_csv_rows_outside_the_image_root_are_refused(tmp_path, capsys, kind):
    import augment_offline

    secret = write_image(tmp_path / "secret" / "x.png")
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("b.png", "y")])
    entry = {"dotdot": "../secret/x.png", "absolute": str(secret), "symlink": "link.png"}[kind]
    if kind == "symlink":
        (tmp_path / "imgs" / "link.png").symlink_to(secret)
    rows = pd.read_csv(csv)
    pd.concat([rows, pd.DataFrame({"file": [entry], "species": ["x"]})]).to_csv(csv, index=False)
    argv = ["--data", str(csv), "--image-root", str(tmp_path / "imgs"), "--workdir",
            str(tmp_path / "work"), "--image-col", "file", "--label-col", "species"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        augment_offline.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert f"data row 3 names {entry!r}, outside the image root" in err
    assert not (tmp_path / "work" / "splits.csv").exists()
    dataset, _ = discover(csv, image_col="file", label_col="species",
                          image_root=tmp_path / "imgs", allow_outside_root=True)  # fmt: skip
    assert str(secret.resolve()) in set(dataset["path"])


# --- names and places: the same rules for folder and CSV datasets ----------------------


@pytest.mark.parametrize(
    "label,problem",
    [("../evil", "path separator"), ("a\\b", "path separator"), (".hidden", "starts with '.'"),
     ("a\x00b", "control character"), ("\x1b[31mred", "control character"),
     ("x" * 201, "longer than 200 bytes"), ("..", "starts with")],
)  # fmt: skip
def test_a_class_name_is_checked_like_a_folder_name(tmp_path, label, problem):
    """A label becomes augmented/<label>/: it must not steer where copies are written."""
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("b.png", "y")])
    table = pd.read_csv(csv)
    table.loc[1, "species"] = label
    csv.write_bytes(table.to_csv(index=False).encode("utf-8", "surrogateescape"))
    with pytest.raises(UserError, match=rf"data row 2: class name .* {problem}"):
        discover(csv, image_col="file", label_col="species", image_root=tmp_path / "imgs")


def test_one_file_under_two_spellings_is_refused(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("sub/b.png", "y")])
    with csv.open("a") as f:
        f.write("sub/../a.png,y\n")
    with pytest.raises(UserError, match=r"data rows 1 and 3 name one file .* two spellings"):
        discover(csv, image_col="file", label_col="species", image_root=tmp_path / "imgs")


def test_a_header_with_stray_spaces_is_read(tmp_path):
    csv = _csv_dataset(tmp_path, [("a.png", "x"), ("b.png", "y")])
    csv.write_text(csv.read_text().replace("file,species", "image, label "))
    dataset, _ = discover(csv, image_root=tmp_path / "imgs")
    assert dataset["label"].tolist() == ["x", "y"]


def test_folder_links_follow_the_root_rule_and_every_skip_is_listed(tmp_path, capsys):
    import os

    data = make_folder_dataset(tmp_path / "data", {"a": 3, "b": 3})
    secret = write_image(tmp_path / "secret" / "s.png", seed=9)
    (data / "a" / "outside.png").symlink_to(secret)
    (data / "a" / "inside.png").symlink_to(data / "b" / "img_002.png")  # a listed file again
    (data / "a" / "dead.png").symlink_to(tmp_path / "nothing.png")
    bad_name = os.path.join(os.fsencode(data / "b"), b"\xff\xfe.png")
    with open(bad_name, "wb") as f:
        f.write((data / "b" / "img_002.png").read_bytes())
    (data / "__MACOSX").mkdir()
    dataset, skipped = discover(data)
    reasons = {os.path.basename(p): r for p, r in skipped}
    assert "links outside the data root" in reasons["outside.png"]
    assert reasons["dead.png"] == "broken symbolic link"
    assert "the same file as" in " ".join(reasons.values())
    assert any("not valid UTF-8" in r for r in reasons.values())
    assert str(secret) not in set(dataset["path"]) and set(dataset["label"]) == {"a", "b"}
    assert "__MACOSX" in capsys.readouterr().err
    assert len(discover(data, allow_outside_root=True)[0]) == len(dataset) + 1


def test_a_class_folder_linked_outside_the_root_is_refused(tmp_path):
    data = make_folder_dataset(tmp_path / "data", {"a": 2, "b": 2})
    make_folder_dataset(tmp_path / "elsewhere", {"c": 2})
    (data / "c").symlink_to(tmp_path / "elsewhere" / "c")
    with pytest.raises(UserError, match="class folder .*c links outside the data root"):
        discover(data)


def test_a_huge_csv_error_stays_one_readable_line(tmp_path, capsys):
    """100,000 duplicate rows used to give one 600 KB error line."""
    import augment_offline

    write_image(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text("image,label\n" + "a.png,x\n" * 100_000)
    with pytest.raises(SystemExit):
        augment_offline.main(["--data", str(tmp_path / "d.csv"), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert "listed more than once" in err and "99,995 more" in err
    assert len(err) < 800 and err.count("\n") == 1


def test_every_error_message_is_one_capped_line():
    from ripik_clf.errors import MAX_MESSAGE, one_line

    assert one_line("a\nb  c") == "a b c"
    long = one_line("x" * 10_000)
    assert long.startswith("x" * MAX_MESSAGE) and long.endswith("(9,400 more characters)")


def test_a_pipe_in_a_class_folder_is_listed_as_skipped_never_opened(tmp_path):
    """Reading a FIFO blocks forever: only regular files are images."""
    import os

    from ripik_clf.config import load_config
    from ripik_clf.data.dataset import load_dataset

    data = make_folder_dataset(tmp_path / "data", {"a": 3, "b": 3})
    os.mkfifo(data / "a" / "pipe.png")
    dataset, skipped = load_dataset(load_config(None, {"data.path": str(data)}).data)
    assert len(dataset) == 6
    assert [why for path, why in skipped if "pipe.png" in str(path)] == [
        "not a regular file (a pipe, socket or device)"
    ]


DECODER_FAILURES = [ValueError("bad"), SyntaxError("bad"), EOFError(), IndexError("x"),
                    KeyError("x"), TypeError("x"), ZeroDivisionError(), AttributeError("x"),
                    RuntimeError("x"), __import__("struct").error("unpack"),
                    Image.DecompressionBombError("big")]  # fmt: skip


@pytest.mark.parametrize("where", ["header", "pixels"])
@pytest.mark.parametrize("failure", DECODER_FAILURES, ids=lambda e: type(e).__name__)
def test_any_decoder_failure_is_a_bad_image_in_both_places(tmp_path, monkeypatch, where, failure):
    """Both places that open images (the header probe and the decoder) turn whatever a
    decoder raises into BadImage: listed in skipped.csv or named, never a traceback."""
    from ripik_clf.data import images

    path = write_image(tmp_path / "x.png")
    real_open = Image.open
    calls = []

    def failing_open(*args, **kwargs):
        calls.append(1)
        if where == "header" or len(calls) > 1:  # the second open is read_rgb's decode
            raise failure
        return real_open(*args, **kwargs)

    monkeypatch.setattr(images.Image, "open", failing_open)
    with pytest.raises(images.BadImage) as bad:
        images.read_rgb(path)
    assert type(failure).__name__ in str(bad.value) and "\n" not in str(bad.value)


def test_a_decoder_failure_while_scanning_is_listed_not_fatal(tmp_path, monkeypatch):
    from ripik_clf.data import images

    data = make_folder_dataset(tmp_path / "data", {"a": 3, "b": 3})
    real_open = Image.open

    def struct_error_for_one(source, *args, **kwargs):
        if "a/img_000" in str(source):
            raise __import__("struct").error("unpack requires a buffer of 4 bytes")
        return real_open(source, *args, **kwargs)

    monkeypatch.setattr(images.Image, "open", struct_error_for_one)
    dataset, skipped = discover(data)
    assert len(dataset) == 5 and len(skipped) == 1 and "error" in skipped[0][1]
