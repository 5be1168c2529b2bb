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


def test_a_damaged_test_shard_is_set_aside_never_read(tmp_path, capsys):
    """Parts cut short or garbled at random offsets (a kill under another tool, a disk
    fault): each is set aside with a warning, and the merge predicts those images itself."""
    import numpy as np

    out = tmp_path / "s.csv"
    ids, probabilities = ["a.png", "b.png", "c.png"], np.full((2, 3, 4), 0.25)
    path = wd.write_test_shard(out, Shard(1, 2), "d1", ids, probabilities, [("c.png", "bad")], 0)
    whole = path.read_bytes()
    found, used, _ = wd.read_test_shards(out, "d1", 2, 4)
    assert used == [path] and found["c.png"] == (None, "bad") and found["a.png"][1] is None
    rng = np.random.default_rng(0)
    for case in range(12):
        damaged = bytearray(whole[: rng.integers(0, len(whole))] if case % 2 else whole)
        if not case % 2:
            at = rng.integers(0, len(damaged), size=8)
            damaged[at[0] : at[0] + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(damaged))
        found, used, _ = wd.read_test_shards(out, "d1", 2, 4)
        if used:  # garbling that missed every byte np.load reads: the part is intact
            assert sorted(found) == ids and np.allclose(found["a.png"][0], 0.25)
        else:
            assert found == {} and not path.exists() and "set aside" in capsys.readouterr().err
    path.write_bytes(whole)
    assert wd.read_test_shards(out, "another", 2, 4)[:2] == ({}, [])  # another ensemble's
