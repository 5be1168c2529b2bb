"""The feature cache: reused while an image is unchanged, recomputed once it is edited."""

import os

import numpy as np

from conftest import write_image
from ripik_clf.train.features import extract_features


class CountingExtractor:
    """Mean colour per channel: a tiny 'backbone' that counts the images it is shown
    (batches come zero-padded to a full batch: blank rows are not images)."""

    output_shape = (None, 3)

    def __init__(self):
        self.images = 0

    def predict_on_batch(self, batch):
        batch = np.asarray(batch)
        self.images += int((batch.reshape(len(batch), -1).max(axis=1) > 0).sum())
        return batch.mean(axis=(1, 2))


def test_an_edited_image_gets_new_features_and_the_others_come_from_the_cache(tmp_path):
    paths = [str(write_image(tmp_path / "img" / f"{i}.png", seed=i)) for i in range(3)]
    extractor = CountingExtractor()
    first, _ = extract_features(paths, extractor, 32, tmp_path / "cache")
    seen = extractor.images
    again, _ = extract_features(paths, extractor, 32, tmp_path / "cache")
    assert extractor.images == seen  # all from the cache
    np.testing.assert_array_equal(again, first)

    write_image(paths[1], seed=99)  # edited in place: other pixels, a later mtime
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    edited, _ = extract_features(paths, extractor, 32, tmp_path / "cache")
    assert extractor.images == seen + 1  # only the edited image went through the model
    fresh, _ = extract_features([paths[1]], CountingExtractor(), 32, tmp_path / "other")
    np.testing.assert_allclose(edited[1], fresh[0], rtol=1e-6)
    assert not np.allclose(edited[1], first[1])
    np.testing.assert_array_equal(edited[[0, 2]], first[[0, 2]])
