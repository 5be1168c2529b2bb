"""A quiet console: no TensorFlow start-up lines and no config dump unless --verbose
(captured from a real process: TensorFlow writes those lines from C++ to fd 2)."""

import subprocess
import sys
from pathlib import Path

from conftest import make_folder_dataset

REPO = Path(__file__).resolve().parents[1]
TF_STARTUP = ("absl::InitializeLog", "oneDNN custom operations", "cuInit", "cuda drivers")


def _augment(tmp_path, *extra):
    data = make_folder_dataset(tmp_path / "data", {"a": 4, "b": 4})
    argv = [sys.executable, "augment_offline.py", "--data", str(data), "--workdir",
            str(tmp_path / "w"), "--copies", "1", "--size", "32", "--workers", "1",
            "--set", "augment.flips=none", *extra]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_stage_prints_no_tensorflow_start_up_and_no_config_dump(tmp_path):
    output = _augment(tmp_path)
    assert not [line for line in TF_STARTUP if line in output], output
    assert "jpeg_quality:" not in output  # the config dump
    assert "config: resolved and saved" in output
    assert (tmp_path / "w" / "augmented" / "config.yaml").exists()


def test_verbose_shows_the_config(tmp_path):
    output = _augment(tmp_path, "--verbose")
    assert "jpeg_quality: 95" in output
