"""Bad inputs and faults, tried as a new user would: each case builds what it needs in a
fresh folder and runs one documented command in a child process.

Used by ``tests/test_faults.py`` (every case must hold) and ``benchmarks/faults.py`` (the
table). A case passes when the exit code is the expected one, no traceback is printed,
the message names the file at fault, and no file outside the data root was read.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from conftest import REPO, make_folder_dataset, write_image


@dataclass
class Case:
    name: str
    build: object  # (root) -> (argv, text the message must contain)
    exit_code: int = 2


def _data(root):
    return make_folder_dataset(root / "data", {"cat": 6, "dog": 6})


def _csv(root, entry):
    images = root / "imgs"
    for i in range(4):
        write_image(images / f"{i}.png", seed=i)
    rows = [(f"{i}.png", "ab"[i % 2]) for i in range(4)] + [(entry, "a")]
    pd.DataFrame(rows, columns=["image", "label"]).to_csv(root / "train.csv", index=False)
    return ["augment_offline.py", "--data", str(root / "train.csv"), "--image-root", str(images),
            "--workdir", str(root / "work"), "--copies", "1", "--size", "32"]  # fmt: skip


def _outside_dotdot(root):
    write_image(root / "secret" / "x.png")
    return _csv(root, "../secret/x.png"), "../secret/x.png"


def _outside_absolute(root):
    secret = write_image(root / "secret" / "x.png")
    return _csv(root, str(secret)), str(secret)


def _outside_symlink(root):
    secret = write_image(root / "secret" / "x.png")
    (root / "imgs").mkdir(parents=True)
    (root / "imgs" / "link.png").symlink_to(secret)
    return _csv(root, "link.png"), "link.png"


def _binary_config(root):
    (root / "weights.bin").write_bytes(bytes(range(256)) * 8)
    return ["train.py", "--config", str(root / "weights.bin")], "weights.bin"


def _folder_config(root):
    return ["train.py", "--config", str(root)], str(root)


def _missing_data(root):
    return ["augment_offline.py", "--data", str(root / "nope")], "nope"


def _corrupt_weights(root):
    (root / "lite0.pth").write_bytes(b"\x80\x02not a weights file")
    return ["train.py", "--phase", "head", "--data", str(_data(root)), "--workdir",
            str(root / "w"), "--weights", str(root / "lite0.pth"), "--image-size", "32"], (
        "lite0.pth"
    )  # fmt: skip


def _full_before_head(root):
    return ["train.py", "--phase", "full", "--data", str(_data(root)), "--workdir",
            str(root / "w"), "--image-size", "32"], "head"  # fmt: skip


def _truncated_image(root):
    data = _data(root)
    good = write_image(root / "big.png", size=256).read_bytes()
    (data / "cat" / "img_000.png").write_bytes(good[: len(good) // 2])
    return ["augment_offline.py", "--data", str(data), "--workdir", str(root / "w"),
            "--copies", "1", "--size", "32"], "img_000.png"  # fmt: skip


def _gif_named_jpg(root):
    data = _data(root)
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    frames[0].save(data / "dog" / "scraped.jpg", format="GIF", save_all=True,
                   append_images=frames[1:])  # fmt: skip
    return ["augment_offline.py", "--data", str(data), "--workdir", str(root / "w"),
            "--copies", "1", "--size", "32"], ""  # fmt: skip


def _missing_test_folder(root):
    return ["ensemble.py", "--data", str(_data(root)), "--workdir", str(root / "w"),
            "--test", str(root / "no_test"), "--out", str(root / "s.csv")], "no_test"  # fmt: skip


def _predict_missing_image(root):
    return ["-m", "ripik_clf", "predict", str(root / "ghost.jpg"), "--workdir",
            str(root / "w")], "ghost.jpg"  # fmt: skip


def _bad_exclude_entry(root):
    (root / "exclude.txt").write_text("cat/ghost.png\n")
    return ["augment_offline.py", "--data", str(_data(root)), "--workdir", str(root / "w"),
            "--set", f"data.exclude={root / 'exclude.txt'}"], "cat/ghost.png"  # fmt: skip


def _second_writer(root):
    """Another process holds the run folder (a head phase still running)."""
    run = root / "w" / "runs" / "original"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from ripik_clf.locks import exclusive\n"
         f"with exclusive({str(run)!r}, 'x'):\n    print('held', flush=True); time.sleep(30)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    holder.stdout.readline()  # "held": the lock is taken
    return ["train.py", "--phase", "head", "--model", "original", "--data", str(_data(root)),
            "--workdir", str(root / "w"), "--image-size", "32"], f"pid {holder.pid}"  # fmt: skip


def _member_path_outside_runs(root):
    write_image(root / "test" / "t0.png")
    return ["ensemble.py", "--workdir", str(root / "w"), "--test", str(root / "test"), "--out",
            str(root / "s.csv"), "--members", "../../secret"], "../../secret"  # fmt: skip


def _workdir_below_a_file(root):
    (root / "plain.txt").write_text("a file, not a folder")
    return ["augment_offline.py", "--data", str(_data(root)), "--workdir",
            str(root / "plain.txt" / "w")], "plain.txt"  # fmt: skip


def _workdir_inside_the_data(root):
    data = _data(root)
    return ["augment_offline.py", "--data", str(data), "--workdir", str(data / "work")], str(data)


CASES = [
    Case("second training run on one run folder", _second_writer),
    Case("--members naming a path outside runs/", _member_path_outside_runs),
    Case("work directory below a plain file", _workdir_below_a_file),
    Case("work directory inside the data folder", _workdir_inside_the_data),
    Case("CSV row ../ outside the image root", _outside_dotdot),
    Case("CSV row: absolute path elsewhere", _outside_absolute),
    Case("CSV row: symlink leading outside", _outside_symlink),
    Case("binary file as --config", _binary_config),
    Case("folder as --config", _folder_config),
    Case("--data that does not exist", _missing_data),
    Case("corrupt --weights file", _corrupt_weights),
    Case("full phase before the head phase", _full_before_head),
    Case("data.exclude naming no image", _bad_exclude_entry),
    Case("--test folder that does not exist", _missing_test_folder),
    Case("predict a missing file", _predict_missing_image),
    Case("truncated image in the data (listed, run goes on)", _truncated_image, exit_code=0),
    Case("GIF saved as .jpg in the data (read)", _gif_named_jpg, exit_code=0),
]


def run_case(case, root):
    """Run one case in ``root``; returns a dict for the table."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    argv, must_name = case.build(root)
    result = subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    output = result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    read_secret = "secret" in " ".join(
        pd.read_csv(csv)["image"].str.cat(sep=" ") for csv in root.rglob("splits.csv")
    )
    return {
        "case": case.name,
        "exit code": result.returncode,
        "expected": case.exit_code,
        "traceback": "Traceback" in output,
        "file named": must_name in (errors[-1] if errors else output),
        "message": errors[-1][:150] if errors else "",
        "read outside root": read_secret,
    }
