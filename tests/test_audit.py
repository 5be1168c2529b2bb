"""The data audit: its pure parts, and the whole command on a dataset with planted faults."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ripik_clf.__main__ import main as cli_main
from ripik_clf.audit import findings as fd
from ripik_clf.audit.planted import make_planted_dataset, score_findings, textured
from ripik_clf.audit.signals import hamming, perceptual_hash


def _jpeg_round_trip(image, quality=70):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_perceptual_hash_survives_reencoding_and_resizing_but_tells_photos_apart():
    image = textured(1, (200, 40, 40), size=64)
    copies = [_jpeg_round_trip(image), np.asarray(Image.fromarray(image).resize((48, 48)))]
    others = [textured(seed, (200, 40, 40), size=64) for seed in range(2, 12)]
    original = perceptual_hash(image)[None]
    assert hamming(original, np.stack([perceptual_hash(c) for c in copies])).max() <= 4
    assert hamming(original, np.stack([perceptual_hash(o) for o in others])).min() > 10


def test_duplicate_pairs_need_both_signals_and_rank_exact_matches_first():
    hashes = np.zeros((4, 8), np.uint8)
    hashes[3] = 255  # image 3 looks nothing like the others
    features = np.array([[1.0, 0], [1.0, 0.01], [0.0, 1], [1.0, 0]])
    pairs = fd.duplicate_pairs(["a", "b", "c", "a"], ["p", "q", "r", "s"], hashes, features)
    found = {(row.i, row.j): row.match for row in pairs.itertuples()}
    # 0-1: near (same hash, cosine ~1); 0-2 and 1-2: same hash but other features: not
    # duplicates; 0-3: same bytes although hash and features say otherwise.
    assert found == {(0, 1): "near", (0, 3): "same bytes"}


def test_classify_pairs_names_conflicts_leaks_and_redundancy():
    pairs = pd.DataFrame(
        [(0, 1, "near", 2, 0.99), (0, 2, "near", 2, 0.99), (0, 3, "same bytes", 0, 1.0)],
        columns=fd.PAIR_COLUMNS,
    )
    labels, sides = ["cat", "dog", "cat", None], ["train", "val", "train", "test"]
    kinds = fd.classify_pairs(pairs, labels, sides)
    assert list(zip(kinds.j, kinds.kind)) == [
        (1, "label conflict"),
        (1, "split leak"),
        (2, "redundant"),
        (3, "split leak"),
    ]


def test_confident_learning_flags_only_confidently_contradicted_labels():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array(
        [[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.1, 0.9], [0.55, 0.45]]
    )
    suspect, suggested, thresholds = fd.confident_learning(labels, probabilities)
    np.testing.assert_allclose(thresholds, [0.6, 0.7167], atol=1e-4)
    # Image 2 (labelled 0) is confidently 1. Image 5 (labelled 1) leans to 0 but 0.55
    # is below class 0's threshold: not flagged.
    assert suspect.tolist() == [False, False, True, False, False, False]
    assert suggested[2] == 1


def test_outlier_scores_single_out_an_image_far_from_every_class():
    rng = np.random.default_rng(0)
    centres = np.eye(3)
    features = np.concatenate([c + 0.05 * rng.normal(size=(20, 3)) for c in centres])
    labels = np.repeat([0, 1, 2], 20)
    features = np.vstack([features, [[1.0, 1.0, 1.0]]])  # between every class
    labels = np.append(labels, -1)
    labelled = labels >= 0
    _, z = fd.outlier_scores(features, labels, labelled)
    assert z[-1] > fd.OUTLIER_Z
    assert (z[:-1] < fd.OUTLIER_Z).all()


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def audited(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("audit")
    planted = make_planted_dataset(root / "data", seed=request.param)
    cli_main(
        [
            "audit",
            "--data",
            str(root / "data" / "train"),
            "--test",
            str(root / "data" / "test"),
            "--workdir",
            str(root / "work"),
            "--set",
            "train.weights=none",
            "--set",
            "train.image_size=32",
        ]
    )
    return root / "work" / "audit", planted


def test_audit_finds_every_planted_fault_with_few_false_alarms(audited):
    out, planted = audited
    found = pd.read_csv(out / "audit.csv", keep_default_na=False)
    score = score_findings(found, planted)
    assert score["missed"] == []
    assert score["recall"] == 1.0
    assert score["precision"] >= 0.8, found[["kind", "image", "other_image"]]


def test_audit_writes_markdown_sheets_and_a_relabel_file_the_pipeline_reads(audited):
    out, planted = audited
    report = (out / "audit.md").read_text()
    for kind in ("label conflict", "split leak", "label error", "outlier"):
        assert f"## {kind} (" in report
        assert (out / f"sheet_{kind.replace(' ', '_')}.png").stat().st_size > 0
    assert "red/red_00.png" in report  # findings name their files
    suggestions = pd.read_csv(out / "relabel_suggestions.csv")
    assert "red/was_yellow_05.png" in set(suggestions["image"])
    assert list(suggestions.columns) == ["image", "label"]


def test_audit_creates_no_split(audited):
    out, _ = audited
    assert not (out.parent / "splits.csv").exists()


def test_audit_lists_unusable_files_and_what_it_could_not_check(tmp_path, capsys):
    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "data", {"a": 1, "b": 2})
    (data / "a" / "broken.png").write_bytes(b"not a png")
    cli_main(["audit", "--data", str(data), "--workdir", str(tmp_path / "work"),
              "--set", "train.weights=none", "--set", "train.image_size=32"])  # fmt: skip
    found = pd.read_csv(tmp_path / "work" / "audit" / "audit.csv", keep_default_na=False)
    assert found[["kind", "image"]].values.tolist() == [
        ["unreadable", str(data / "a" / "broken.png")]
    ]
    report = (tmp_path / "work" / "audit" / "audit.md").read_text()
    assert "Label errors not checked: a class has fewer than 2 readable images." in report
