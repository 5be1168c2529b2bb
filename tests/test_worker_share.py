"""Each worker reads its share: the training and validation streams of worker k of N
hold only its replicas' slices of every global batch, together the one-worker batches,
and decode only the versions those slices show (train/datasets.py ``share_positions``)."""

import numpy as np
import pytest
from PIL import Image

import ripik_clf.train.datasets as datasets
from ripik_clf.train.datasets import EpochClock, Share, share_positions, versioned_dataset

# (images, global batch, replicas, workers): short last batches, replicas per worker > 1,
# a last batch smaller than the number of replicas (empty slices).
CASES = [(10, 4, 2, 2), (17, 8, 4, 2), (7, 6, 6, 3), (3, 8, 4, 4), (32, 8, 2, 1), (9, 9, 3, 1)]


@pytest.mark.parametrize("count,batch,replicas,workers", CASES)
def test_the_workers_shares_of_each_step_are_disjoint_and_make_the_whole_batch(
    count, batch, replicas, workers
):
    tables = [share_positions(count, batch, Share(w, workers, replicas)) for w in range(workers)]
    steps = -(-count // batch)
    assert all(len(t) == steps for t in tables)  # every worker takes every step
    for step in range(steps):
        shares = [t[step][t[step] >= 0] for t in tables]
        whole = np.arange(step * batch, min((step + 1) * batch, count))
        np.testing.assert_array_equal(np.concatenate(shares), whole)  # in order, no overlap
        size, per = len(whole), -(-len(whole) // replicas)
        for w, share in enumerate(shares):  # a worker's share: its replicas' slices
            local = replicas // workers
            assert len(share) == max(0, min(size - w * local * per, local * per))


def _versions(tmp_path, sources=12, versions=3):
    """Source s, version v: a solid image of value 10 * s + v (readable back from pixels)."""
    out = []
    for s in range(sources):
        group = []
        for v in range(versions):
            path = tmp_path / f"s{s}_v{v}.png"
            Image.fromarray(np.full((8, 8, 3), 10 * s + v, np.uint8)).save(path)
            group.append(str(path))
        out.append(group)
    return out


def _epochs(ds, clock, epochs):
    seen = []
    for epoch in range(epochs):
        clock.epoch.assign(epoch)
        seen.append([x.numpy()[:, 0, 0, 0].round().astype(int) for x, _ in ds])
    return seen


@pytest.mark.parametrize("cache", [True, False], ids=["in memory", "streamed"])
def test_two_workers_read_halves_of_the_one_worker_epochs_and_decode_only_them(
    tmp_path, monkeypatch, cache
):
    versions, labels = _versions(tmp_path), [s % 2 for s in range(12)]
    decoded = []  # how many images each dataset decoded into memory
    original = datasets.decode_all

    def counting(paths, *args):
        decoded.append(len(paths))
        return original(paths, *args)

    monkeypatch.setattr(datasets, "decode_all", counting)

    def stream(share):
        clock = EpochClock()
        ds = versioned_dataset(versions, labels, 2, 8, 8, seed=4, clock=clock, epochs=2,
                               cache=cache, share=share)  # fmt: skip
        return _epochs(ds, clock, 2)

    one = stream(Share())
    halves = [stream(Share(w, 2, 2)) for w in range(2)]
    for epoch in range(2):
        for step, whole in enumerate(one[epoch]):  # 12 images: a batch of 8, then of 4
            parts = [h[epoch][step] for h in halves]
            np.testing.assert_array_equal(np.concatenate(parts), whole)
            assert [len(p) for p in parts] == [len(whole) // 2] * 2
    shown = {int(v) for epoch in one for step in epoch for v in step}
    assert len(shown) == 12 * 2  # two epochs: two versions of each source, of three
    if cache:  # the one worker decodes what two epochs show; each of two, its half
        assert decoded == [24, 12, 12]
    else:
        assert decoded == []  # streamed: each step's share decoded as it is read
