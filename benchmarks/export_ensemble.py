"""The exported ensemble against running its members one by one: size and latency.

    python benchmarks/export_ensemble.py --workdir work/demo [--images 64] [--repeats 5]

Needs a work directory where ``ensemble.py`` ran (its ``report/ensemble.json``). Exports
the submitted ensemble to SavedModel, TFLite and ONNX in a temporary folder, then on the
first ``--images`` validation images (decoded once, outside the timings) times, per
batch of 1 and of 32: the Keras ensemble (each member predicted in turn, TTA views, the
vote in NumPy: ``Ensemble.predict`` on arrays) and each export. Prints size on disk and
the median milliseconds per image over ``--repeats`` runs, and the ratio to the members
run one by one; all in one process, side by side.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def size_on_disk(path):
    path = Path(path)
    return (
        path.stat().st_size
        if path.is_file()
        else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    )


def median_ms_per_image(call, images, batch, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(0, len(images), batch):
            call(images[i : i + batch])
        times.append((time.perf_counter() - started) * 1000 / len(images))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="work/demo")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from ripik_clf.config import load_config
    from ripik_clf.data.images import load_for_model
    from ripik_clf.data.splits import recorded_settings
    from ripik_clf.predict.ensemble import Ensemble
    from ripik_clf.predict.export import run_export, write_export
    from ripik_clf.predict.export_ensemble import STEM, _held_out_paths, ensemble_model, input_size

    config = load_config(None, {"workdir": args.workdir}, recorded_settings(args.workdir))
    ensemble = Ensemble.load(args.workdir)
    size = input_size(ensemble)
    paths = _held_out_paths(config, ensemble)[: args.images]
    images = np.stack([load_for_model(p, size) for p in paths])
    members_bytes = sum(size_on_disk(m.path) for m in ensemble.members)
    rows = [("members one by one (Keras)", members_bytes, lambda b: ensemble.predict(list(b)))]
    with tempfile.TemporaryDirectory() as tmp:
        model = ensemble_model(ensemble)
        spec = type(
            "Spec", (), {"image_size": size, "classes": ensemble.classes, "temperature": True}
        )
        for fmt in ("savedmodel", "tflite", "onnx"):
            target = write_export(model, fmt, tmp, STEM, "none", spec)
            run = lambda b, t=target, f=fmt: run_export(t, f, b.astype("float32"))  # noqa: E731
            rows.append((f"exported {fmt}", size_on_disk(target), run))
        results = {
            name: (nbytes, [median_ms_per_image(call, images, b, args.repeats) for b in (1, 32)])
            for name, nbytes, call in rows
        }
    base = results["members one by one (Keras)"][1]
    print(f"\n{len(ensemble.members)} members, input {size} px, {len(images)} images, "
          f"median of {args.repeats}\n")  # fmt: skip
    print("| how | size on disk (MB) | ms/image, batch 1 | ratio | ms/image, batch 32 | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (nbytes, (one, many)) in results.items():
        print(f"| {name} | {nbytes / 1e6:.1f} | {one:.1f} | {base[0] / one:.2f}x | "
              f"{many:.1f} | {base[1] / many:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
