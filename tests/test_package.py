"""ripik_clf as a package: what pip installs from pyproject.toml, and the ``ripik`` command
from a wheel in a fresh virtual environment, photos to submission."""

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

from conftest import make_folder_dataset

REPO = Path(__file__).resolve().parents[1]


def _requirement_lines(text):
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return sorted(line for line in lines if line and not line.startswith("-"))


def test_pyproject_installs_what_requirements_txt_lists():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == _requirement_lines(
        (REPO / "requirements.txt").read_text()
    )
    assert project["scripts"]["ripik"] == "ripik_clf.cli.ripik:main"
    assert {"onnx", "mlflow", "dev"} <= set(project["optional-dependencies"])
    import ripik_clf

    assert project["version"] == ripik_clf.__version__
    assert (REPO / "LICENSE").exists() and ripik_clf.__version__ in (
        REPO / "CHANGELOG.md"
    ).read_text()


def test_ripik_dispatches_and_reports_its_version(capsys):
    from ripik_clf.cli.ripik import COMMANDS, main

    main(["--version"])
    assert re.fullmatch(r"ripik \d+\.\d+\.\d+\n", capsys.readouterr().out)
    main([])
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in COMMANDS)
    with pytest.raises(SystemExit) as stop:
        main(["bogus"])
    assert stop.value.code == 2 and "unknown command 'bogus'" in capsys.readouterr().err
    for command in COMMANDS:
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        assert "usage:" in capsys.readouterr().out


def _fresh_venv(tmp_path):
    """A virtual environment with the wheel installed and this one's packages reused."""
    dist, source = tmp_path / "dist", tmp_path / "source"
    # A copy of the sources: setuptools builds in the source folder (build/, egg-info).
    everywhere = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*_cache")
    at_root = {".git", ".venv", "work", "data", "build", "dist"}  # ripik_clf/data stays

    def skip(folder, names):
        return set(everywhere(folder, names)) | (
            at_root & set(names) if folder == str(REPO) else set()
        )

    shutil.copytree(REPO, source, ignore=skip)
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
             "--no-build-isolation", "-q", "-w", str(dist)]  # fmt: skip
    subprocess.run(build, check=True, timeout=300)
    (wheel,) = dist.glob("ripik_clf-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python*/site-packages"))
    # Reuse installed packages: a path line (not a site dir, so this environment's
    # editable ripik_clf is not activated; the wheel's comes first).
    (site / "reuse.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=300)  # fmt: skip
    return venv


@pytest.mark.slow  # builds a wheel and a venv, then the whole pipeline on tiny images
def test_the_wheel_installs_ripik_and_fit_goes_from_photos_to_a_submission(tmp_path):
    venv = _fresh_venv(tmp_path)
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import ripik_clf; print(ripik_clf.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
    assert where.stdout.startswith(str(venv))  # the wheel's package, not the checkout
    data = make_folder_dataset(tmp_path / "photos", {"cat": 8, "dog": 8, "owl": 8})
    test = make_folder_dataset(tmp_path / "test_src", {"x": 4}) / "x"
    small = ["--image-size", "32", "--workdir", str(tmp_path / "w")]
    for key_value in ("augment.copies=1", "augment.size=32", "augment.workers=1",
                      "augment.flips=none", "train.head_epochs=2", "train.full_epochs=1",
                      "train.full_min_steps=0", "ensemble.tta=none"):  # fmt: skip
        small += ["--set", key_value]
    argv = [str(venv / "bin" / "ripik"), "fit", str(data), "--test", str(test),
            "--out", str(tmp_path / "S.csv"), *small]  # fmt: skip
    first = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "fit: 24 photos" in first.stdout and "report" in first.stdout.splitlines()[-1]
    rows = (tmp_path / "S.csv").read_text().splitlines()
    assert rows[0] == "image_id,label" and len(rows) == 1 + 4
    assert (tmp_path / "w" / "report" / "report.md").exists()
    assert (tmp_path / "w" / "report" / "report.html").exists()  # the outside check
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("(resumed run): kept") == 6  # 3 phases x 2 models


@pytest.mark.slow  # the whole pipeline on tiny images, in this process
def test_the_python_api_fits_like_the_command(tmp_path):
    import ripik_clf
    from ripik_clf.errors import UserError

    data = make_folder_dataset(tmp_path / "photos", {"cat": 6, "dog": 6})
    test = make_folder_dataset(tmp_path / "t", {"x": 3}) / "x"
    small = {"augment.copies": 1, "augment.size": 32, "augment.workers": 1,
             "augment.flips": "none", "train.head_epochs": 1, "train.full_epochs": 1,
             "train.full_min_steps": 0, "ensemble.tta": "none",
             "train.weights": "none"}  # fmt: skip
    result = ripik_clf.fit(data, test, tmp_path / "S.csv", workdir=tmp_path / "w",
                           image_size=32, settings=small)  # fmt: skip
    assert result["submission"].read_text().count("\n") == 1 + 3
    assert result["report"].exists()
    with pytest.raises(UserError, match="not a folder"):
        ripik_clf.fit(tmp_path / "nope", test, tmp_path / "S2.csv", workdir=tmp_path / "w2")
