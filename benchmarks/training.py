"""Training speed: the head-phase feature cache and the full-phase input pipeline.

    python benchmarks/training.py [--epochs 10 30] [--image-size 64]
    python benchmarks/training.py --photos ../shared/datasets/clothing8/train   # 224 px
    python benchmarks/training.py --workers   # 1 vs 2 workers (benchmarks/distributed.py)

On the demo digits (training split of the 'original' model), EfficientNet-Lite0:

1. Head phase, same data and epochs: ours (features computed once, then the head trains
   on vectors) vs plain ``model.fit`` of the frozen classifier on in-memory images.
   Wall time ratio and validation accuracy of each.
2. Full phase (every layer but BatchNorm trainable): training images/s through our
   tf.data pipeline reading JPEG files vs the same model fed in-memory tensors.
   First epoch (decoding) and the median of later epochs (decoded images cached).

With ``--photos DIR`` (class folders of real photos), at 224 px instead: feature
extraction and the full phase's training speed through our pipelines, each as a share
of the same model's own speed on in-memory tensors (``predict_on_batch`` /
``train_on_batch`` loops over pre-decoded arrays).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ripik_clf  # noqa: E402,F401  (quiet TensorFlow before it loads)


def load_demo(image_size):
    from ripik_clf.config import load_config
    from ripik_clf.data.dataset import class_names, load_dataset
    from ripik_clf.data.splits import make_splits

    config = load_config(REPO / "configs" / "demo.yaml")
    dataset, _ = load_dataset(config.data)
    splits = make_splits(dataset, config.split).merge(dataset[["image", "path"]], on="image")
    index = {c: i for i, c in enumerate(class_names(dataset))}
    train, val = splits[splits.split == "train"], splits[splits.split == "val"]
    return (
        list(train["path"]),
        np.array([index[c] for c in train["label"]]),
        list(val["path"]),
        np.array([index[c] for c in val["label"]]),
        len(index),
    )


class EpochTimer:
    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.started = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.seconds.append(time.perf_counter() - inner.started)

        self.seconds = []
        self.callback = _Timer()


def head_benchmark(data, image_size, epochs, batch_size=64):
    import keras

    from ripik_clf.data.images import load_for_model
    from ripik_clf.models.classifier import build_classifier, feature_extractor
    from ripik_clf.models.registry import create_backbone
    from ripik_clf.train.features import extract_features

    train_paths, train_y, val_paths, val_y, n = data
    onehot = lambda y: keras.utils.to_categorical(y, n)  # noqa: E731
    results = {}

    keras.utils.set_random_seed(0)
    backbone = create_backbone("efficientnet_lite0", image_size=image_size)
    backbone.trainable = False
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        extractor = feature_extractor(backbone)
        train_x, _ = extract_features(train_paths, extractor, image_size, cache, desc="train")
        val_x, _ = extract_features(val_paths, extractor, image_size, cache, desc="val")
        head = keras.Sequential(
            [
                keras.Input((train_x.shape[1],)),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(n, activation="softmax"),
            ]
        )
        head.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        head.fit(train_x, onehot(train_y), batch_size=batch_size, epochs=epochs, verbose=0)
        results["ours (cached features)"] = (
            time.perf_counter() - started,
            head.evaluate(val_x, onehot(val_y), verbose=0)[1],
        )

    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    images = np.stack([load_for_model(p, image_size) for p in train_paths]).astype("float32")
    val_images = np.stack([load_for_model(p, image_size) for p in val_paths]).astype("float32")
    model = build_classifier(backbone, n, 0.2)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(images, onehot(train_y), batch_size=batch_size, epochs=epochs, verbose=0)
    results["plain model.fit (frozen)"] = (
        time.perf_counter() - started,
        model.evaluate(val_images, onehot(val_y), verbose=0)[1],
    )
    return results


def full_benchmark(data, image_size, epochs=4, batch_size=64):
    import keras
    import tensorflow as tf
    from PIL import Image

    from ripik_clf.data.images import load_for_model
    from ripik_clf.models.classifier import build_classifier, unfreeze
    from ripik_clf.models.registry import create_backbone
    from ripik_clf.train.datasets import image_dataset

    png_paths, train_y, _, _, n = data
    tmp = tempfile.TemporaryDirectory()
    train_paths = []
    for i, path in enumerate(png_paths):  # the reference data is JPEG: measure that
        train_paths.append(f"{tmp.name}/{i:05d}.jpg")
        Image.open(path).save(train_paths[-1], quality=95)
    images = np.stack([load_for_model(p, image_size) for p in train_paths])
    sources = {
        "ours: tf.data from JPEG files": lambda: image_dataset(
            train_paths, train_y, n, image_size, batch_size, shuffle=True
        ),
        "in-memory tensors": lambda: (
            tf.data.Dataset.from_tensor_slices(
                (images.astype("float32"), keras.utils.to_categorical(train_y, n))
            )
            .shuffle(len(images))
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        ),
    }
    rates = {}
    for name, make in sources.items():
        keras.utils.set_random_seed(0)
        model = unfreeze(
            build_classifier(create_backbone("efficientnet_lite0", image_size=image_size), n, 0.2)
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="categorical_crossentropy")
        timer = EpochTimer()
        model.fit(make(), epochs=epochs, verbose=0, callbacks=[timer.callback])
        per_epoch = [len(train_paths) / s for s in timer.seconds]
        rates[name] = (per_epoch[0], float(np.median(per_epoch[1:])))
    tmp.cleanup()
    return rates


def photo_benchmark(folder, image_size=224, images=256, epochs=3, batch_size=32):
    """Our pipelines vs the model on in-memory tensors, at photo resolution."""
    import keras

    from ripik_clf.data.images import load_for_model
    from ripik_clf.models.classifier import build_classifier, feature_extractor, unfreeze
    from ripik_clf.models.registry import create_backbone
    from ripik_clf.train.datasets import EpochClock, versioned_dataset
    from ripik_clf.train.features import extract_features

    classes = sorted(p.name for p in Path(folder).iterdir() if p.is_dir())
    files = sorted(Path(folder).rglob("*.jpg"))
    pick = np.random.default_rng(0).permutation(len(files))[:images]
    paths = [str(files[i]) for i in pick]
    labels = np.array([classes.index(Path(p).parent.name) for p in paths])
    decoded = np.stack([load_for_model(p, image_size) for p in paths]).astype("float32")
    onehot = keras.utils.to_categorical(labels, len(classes))
    backbone = create_backbone("efficientnet_lite0", image_size=image_size)
    extractor = feature_extractor(backbone)
    rows = {}

    # Feature extraction: ours decodes on threads while the model runs; 64 per batch.
    extractor.predict_on_batch(decoded[:64])  # trace once, outside both timings
    ours, memory = [], []
    for _ in range(3):  # interleaved: the machine's noise hits both alike
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            extract_features(paths, extractor, image_size, cache, desc="features")
            ours.append(len(paths) / (time.perf_counter() - started))
        started = time.perf_counter()
        for i in range(0, len(paths), 64):
            batch = np.zeros((64, image_size, image_size, 3), "float32")
            batch[: len(decoded[i : i + 64])] = decoded[i : i + 64]
            extractor.predict_on_batch(batch)
        memory.append(len(paths) / (time.perf_counter() - started))
    rows["feature extraction"] = (float(np.median(ours)), float(np.median(memory)))

    # Full phase: model.fit over our versioned dataset (as train_full runs it) vs a
    # train_on_batch loop over the same images already decoded in memory.
    def fresh_model():
        keras.utils.set_random_seed(0)
        model = unfreeze(build_classifier(backbone, len(classes), 0.2))
        model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="categorical_crossentropy")
        return model

    model, clock, timer = fresh_model(), EpochClock(), EpochTimer()
    ds = versioned_dataset([[p] for p in paths], labels, len(classes), image_size, batch_size,
                           seed=0, clock=clock, epochs=epochs, desc="decode")  # fmt: skip
    model.fit(ds, epochs=epochs, verbose=0, callbacks=[clock, timer.callback])
    fit_rates = [len(paths) / s for s in timer.seconds]
    model = fresh_model()
    memory_rates = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(paths))
        started = time.perf_counter()
        for i in range(0, len(paths), batch_size):
            take = order[i : i + batch_size]
            model.train_on_batch(decoded[take], onehot[take])
        memory_rates.append(len(paths) / (time.perf_counter() - started))
    # Epoch 1 of each includes tracing the training step: compare the later epochs.
    rows["full phase (training)"] = (
        float(np.median(fit_rates[1:])),
        float(np.median(memory_rates[1:])),
    )
    return rows, len(paths)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 30], help="head epochs")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--photos", metavar="DIR", help="class folders of photos: 224 px mode")
    parser.add_argument(
        "--workers",
        action="store_true",
        help="the full phase on 1 worker, 2 workers and 2 mirrored CPU devices at one "
        "global batch (benchmarks/distributed.py)",
    )
    args = parser.parse_args()
    if args.workers:
        import distributed

        distributed.main([])
        return
    if args.photos:
        rows, count = photo_benchmark(args.photos)
        print(f"\n{count} photos from {args.photos}, 224 px, efficientnet_lite0, this CPU")
        print("(images/s; medians of 3 interleaved runs for features, of epochs 2-3 for")
        print("training)\n")
        print("| stage | ours | model on in-memory tensors | ours / in-memory |")
        print("|---|---:|---:|---:|")
        for name, (ours, memory) in rows.items():
            print(f"| {name} | {ours:.1f} | {memory:.1f} | {ours / memory:.0%} |")
        return
    data = load_demo(args.image_size)
    print(
        f"demo digits: {len(data[0])} training and {len(data[2])} validation images, "
        f"{args.image_size} px, efficientnet_lite0, this machine's CPU"
    )

    print("\nHead phase (time includes computing the features)\n")
    print("| epochs | variant | seconds | speed-up | val accuracy |")
    print("|---:|---|---:|---:|---:|")
    for epochs in args.epochs:
        head = head_benchmark(data, args.image_size, epochs)
        base = head["plain model.fit (frozen)"][0]
        for name, (seconds, accuracy) in head.items():
            print(f"| {epochs} | {name} | {seconds:.1f} | {base / seconds:.1f}x | {accuracy:.4f} |")

    full = full_benchmark(data, args.image_size)
    memory = full["in-memory tensors"][1]
    print("\nFull phase training throughput (images/s; later epochs = median of epochs 2-4)\n")
    print("| input | first epoch | later epochs | vs in-memory |")
    print("|---|---:|---:|---:|")
    for name, (first, later) in full.items():
        print(f"| {name} | {first:.1f} | {later:.1f} | {later / memory:.0%} |")


if __name__ == "__main__":
    main()
