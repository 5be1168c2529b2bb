"""``--shard I/N`` for feature extraction: N shares that together are the whole job, and
the head phase as the merge (it computes nothing the shards computed)."""

import pytest

import train
from conftest import make_folder_dataset
from ripik_clf import workdir as wd
from ripik_clf.config import load_config
from ripik_clf.data.dataset import load_dataset
from ripik_clf.data.splits import load_or_make_splits
from ripik_clf.errors import UserError
from ripik_clf.shards import Shard


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("n_items", [0, 1, 5, 22])
def test_the_shares_are_disjoint_and_together_the_whole_job(count, n_items):
    items = [f"img_{i:03d}.png" for i in reversed(range(n_items))]  # any order in
    shares = [Shard(i, count).take(items) for i in range(1, count + 1)]
    assert sorted(x for share in shares for x in share) == sorted(items)
    assert sum(map(len, shares)) == n_items  # nothing twice
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # equal shares
    assert shares == [Shard(i, count).take(set(items)) for i in range(1, count + 1)]


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", "", "-1/2"])
def test_a_bad_shard_is_one_line(text):
    with pytest.raises(UserError, match="--shard"):
        Shard.parse(text)


def _argv(data, work, *extra):
    return ["--data", str(data), "--workdir", str(work), "--model", "original",
            "--weights", "none", "--image-size", "32", "--batch-size", "8", *extra]  # fmt: skip


def _cached(work):
    return {p.name for p in (work / "features").rglob("*.npy")}


def test_feature_shards_fill_the_cache_and_the_head_phase_merges(tmp_path, capsys):
    data = make_folder_dataset(tmp_path / "data", {"a": 5, "b": 5, "c": 4})
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as stop:  # shards never make the split
        train.main(_argv(data, work, "--phase", "features", "--shard", "1/2"))
    assert stop.value.code == 2 and not wd.has_split(work)
    assert "split" in capsys.readouterr().err
    config = load_config(None, {"workdir": str(work), "data.path": str(data)})
    load_or_make_splits(load_dataset(config.data)[0], config.split, work)

    train.main(_argv(data, work, "--phase", "features", "--shard", "1/2"))
    first = _cached(work)
    assert 0 < len(first) < 14  # a share, not the job
    train.main(_argv(data, work, "--phase", "features", "--shard", "2/2"))
    both = _cached(work)
    assert len(both) == 14 and first < both  # every image once: 14 distinct images
    assert not (work / "runs" / "original").exists()  # shards write no run
    capsys.readouterr()
    train.main(_argv(data, work, "--phase", "head", "--epochs", "1"))
    assert _cached(work) == both  # the merge computed nothing again
    assert wd.phase_model(work / "runs" / "original", "head").exists()


def test_shard_belongs_to_the_features_phase(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--workdir", str(tmp_path), "--phase", "head", "--shard", "1/2"])
    assert stop.value.code == 2
    assert "--phase features" in capsys.readouterr().err


class _Member:
    """What the prediction cache needs of a member: a model file, classes, TTA record."""

    def __init__(self, path):
        self.path, self.classes, self.record, self.fitted = path, ["a", "b", "c"], None, {}

    def temperature_for(self, tta):
        return 1.0


def test_the_prediction_cache_is_keyed_by_content_and_a_damaged_entry_is_redone(
    tmp_path, monkeypatch
):
    """Entries cut or garbled at random offsets are computed again, never read; an edited
    image or a retrained model is a new entry, never a stale one."""
    import numpy as np

    import ripik_clf.predict.cache as cache_module
    from conftest import write_image

    calls = []

    def fake_predict(members, paths, tta, batch_size, progress, calibrated):
        calls.append(len(paths))
        # probabilities (the cache checks entries by value), one set per file content
        rows = [np.array([1.0, 1.0 + len(open(p, "rb").read()) % 7, 1.0]) for p in paths]
        rows = [row / row.sum() for row in rows]
        return np.stack([np.stack(rows)] * len(members)), []

    monkeypatch.setattr(cache_module, "predict_members", fake_predict)
    model = tmp_path / "m.keras"
    model.write_bytes(b"model one")
    images = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(3)]
    cache = cache_module.PredictionCache(tmp_path / "predictions")
    first, _ = cache.predict([_Member(model)], images, "none", calibrated=False)
    again, _ = cache.predict([_Member(model)], images, "none", calibrated=False)
    assert calls == [3] and np.array_equal(first, again)  # the second from the cache
    entries = sorted((tmp_path / "predictions").rglob("*.npz"))
    rng, redone = np.random.default_rng(0), 0
    for case in range(10):
        entry = entries[case % 3]
        whole = entry.read_bytes()
        damaged = bytearray(whole[: rng.integers(0, len(whole))] if case % 2 else whole)
        if not case % 2:
            damaged[int(rng.integers(0, len(whole)))] ^= 0xFF  # one byte anywhere
        entry.write_bytes(bytes(damaged))
        calls.clear()
        result, _ = cache.predict([_Member(model)], images, "none", calibrated=False)
        redone += sum(calls)  # a byte of zip metadata (a time stamp) may change nothing
        assert np.array_equal(result, first)  # never the damaged values
        entry.write_bytes(whole)
    assert redone >= 5  # every cut, and the flipped bytes the CRC covers
    write_image(images[1], seed=9)  # edited: other content, a new entry
    model.write_bytes(b"model two")  # retrained: every entry new
    calls.clear()
    cache.predict([_Member(model)], images, "none", calibrated=False)
    assert calls == [3]


def test_a_model_file_that_cannot_be_read_is_predicted_but_never_cached(tmp_path, monkeypatch):
    """No digest of the model file (gone or unreadable since it was loaded): its
    predictions are computed and returned, and nothing is entered under a missing key."""
    import numpy as np

    import ripik_clf.predict.cache as cache_module
    from conftest import write_image

    def fake_predict(members, paths, tta, batch_size, progress, calibrated):
        return np.ones((len(members), len(paths), 3)) / 3, []

    monkeypatch.setattr(cache_module, "predict_members", fake_predict)
    monkeypatch.setattr(
        cache_module, "file_sha1", lambda p: None if "m.keras" in str(p) else "ab" * 20
    )
    model = tmp_path / "m.keras"
    model.write_bytes(b"model")
    images = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(2)]
    cache = cache_module.PredictionCache(tmp_path / "predictions")
    out, _ = cache.predict([_Member(model)], images, "none", calibrated=False)
    assert out.shape == (1, 2, 3) and np.allclose(out, 1 / 3)
    cache_module.store_model_predictions(tmp_path / "predictions", model, "none", images, out[0])
    assert not list((tmp_path / "predictions").rglob("*.npz"))
