"""Exporting a trained model (SavedModel, TFLite, ONNX), checked against the Keras model."""

import sys
import tempfile
from pathlib import Path

import numpy as np

from ripik_clf import workdir as wd
from ripik_clf.config import EXPORT_FORMATS as FORMATS
from ripik_clf.config import QUANTIZATIONS
from ripik_clf.errors import UserError
from ripik_clf.locks import load_model_file
from ripik_clf.progress import say

MIN_AGREEMENT = 0.995  # arg-max agreement with the Keras model on the check images


def resolve_model_file(workdir, run):
    """A run name (its full phase's model, else its head's) or a .keras path."""
    path = Path(run)
    if path.suffix == ".keras":
        if not path.exists():
            raise UserError(f"model file not found: {path}")
        return path
    return wd.latest_model_file(workdir, run)


def check_formats(fmt, quantize):
    """Refuse an unknown format or quantization, or onnx without its packages."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise UserError(f"unknown quantization {quantize!r}; known: {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and fmt != "tflite":
        raise UserError(f"--quantize {quantize} applies to tflite only")
    if fmt == "onnx":  # tf2onnx converts, onnxruntime runs the check
        try:
            import onnxruntime  # noqa: F401
            import tf2onnx  # noqa: F401
        except ImportError:
            raise UserError(
                "format onnx needs the packages tf2onnx and onnxruntime: "
                "pip install tf2onnx onnxruntime"
            ) from None


def export_model(model_path, fmt, out_dir, quantize="none"):
    """Write the export of one model file; returns the path of the exported artefact."""
    check_formats(fmt, quantize)
    record = wd.read_run_record(model_path.parent)
    return write_export(
        serving_model(model_path), fmt, out_dir, model_path.parent.name, quantize, record
    )


def write_export(model, fmt, out_dir, stem, quantize, record):
    """Export a Keras model as ``<stem>...`` in ``out_dir``, with ``<stem>_classes.json``
    and ``<stem>_preprocessing.json`` when ``record`` (classes, image_size) is given."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "savedmodel":
        target = out_dir / f"{stem}_savedmodel"
        model.export(str(target), format="tf_saved_model", verbose=False)
    elif fmt == "tflite":
        target = out_dir / f"{stem}{'' if quantize == 'none' else '_' + quantize}.tflite"
        target.write_bytes(_tflite_bytes(model, quantize))
    else:
        target = out_dir / f"{stem}.onnx"
        # tf2onnx traces the model's call; a model loaded from disk has not been called yet.
        size = model.input_shape[1:]
        model.predict(np.zeros((1, *size), "float32"), verbose=0)
        model.export(str(target), format="onnx", verbose=False)
    if record is not None:  # the class list travels with the export
        write_preprocessing_spec(out_dir, stem, target, fmt, record)
    return target


def write_preprocessing_spec(out_dir, stem, target, fmt, record):
    """What a consumer must do to an image before the exported model sees it: exactly
    what :func:`ripik_clf.data.images.load_for_model` does (resizing another way moves the
    probabilities; e.g. bilinear without antialiasing on a large photo)."""
    size = int(record.image_size)
    path = Path(out_dir) / f"{stem}_preprocessing.json"
    try:  # the formats exported before (a damaged spec is written anew)
        earlier = wd.read_export_spec(path) if path.exists() else {}
    except UserError:
        earlier = {}
    spec = {
        "input": {"shape": [None, size, size, 3], "layout": "NHWC", "dtype": "float32"},
        "channels": "RGB",
        "value_range": [0, 255],  # raw pixels: normalisation is inside the model
        "decode": "EXIF orientation applied; grayscale, palette, CMYK, 16-bit and alpha "
        "images converted to 8-bit RGB; animated files: first frame",
        "resize": f"to {size} x {size}, aspect ratio not kept; OpenCV cv2.resize with "
        "INTER_AREA when either side shrinks, INTER_LINEAR otherwise",
        "output": "softmax probabilities in the order of `classes`"
        + (", temperature applied" if record.temperature else ""),
        "classes": record.classes,
        "files": sorted({*earlier.get("files", {}), target.name}),
        "formats": sorted({*earlier.get("formats", []), fmt}),
    }
    wd.write_export_spec(out_dir, stem, spec)


def find_preprocessing_spec(exported):
    """The spec written beside an exported file by :func:`write_preprocessing_spec`."""
    exported = Path(exported)
    for candidate in sorted(exported.parent.glob("*_preprocessing.json")):
        spec = wd.read_export_spec(candidate)
        if exported.name not in spec.get("files", []):
            continue
        try:
            size = spec["input"]["shape"][1]
            ok = isinstance(size, int) and size >= 1 and isinstance(spec["classes"], list)
        except (KeyError, IndexError, TypeError):
            ok = False
        if not ok or not spec["classes"]:
            raise wd.damaged(candidate, "no input size or class list", wd.REEXPORT)
        return spec
    raise UserError(
        f"no *_preprocessing.json beside {exported} names it: export it with "
        "`python -m ripik_clf export` (which writes one)"
    )


def export_format(exported):
    """savedmodel | tflite | onnx, from an exported artefact's path."""
    exported = Path(exported)
    if exported.is_dir() and (exported / "saved_model.pb").exists():
        return "savedmodel"
    if exported.suffix in (".tflite", ".onnx"):
        return exported.suffix[1:]
    raise UserError(f"{exported} is not an exported model (SavedModel folder, .tflite, .onnx)")


def serving_model(model_path):
    """The Keras model as exported: with the temperature its run recorded for this
    model file (its run record), so the export's probabilities are the calibrated ones."""

    from ripik_clf.predict.calibration import scaled_model

    model = load_model_file(model_path)
    record = wd.read_run_record(Path(model_path).parent)
    return model if record is None else scaled_model(model, record.temperature_of(model_path))


def _tflite_bytes(model, quantize):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize in ("float16", "dynamic"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def run_export(path, fmt, images):
    """Probabilities of the exported artefact for ``images`` (float32 0-255 NHWC); a
    damaged artefact is one line naming it."""
    try:
        return _run_export(path, fmt, images)
    except Exception as err:  # noqa: BLE001 - protobuf, flatbuffer and ONNX errors alike
        why = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise UserError(
            f"{path} cannot be run as a {fmt} model ({why}): export it again "
            "(python -m ripik_clf export)"
        ) from None


def _run_export(path, fmt, images):
    import tensorflow as tf

    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(path))
        return np.asarray(loaded.serve(tf.constant(images)))
    if fmt == "tflite":
        # LiteRT's interpreter: tf.lite.Interpreter is deprecated (and warns on every use).
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(inp["index"], images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def check_export(model_path, exported, fmt, images):
    """Compare the export with the Keras model: (max abs difference, arg-max agreement)."""

    expected = serving_model(model_path).predict(images, verbose=0)
    got = run_export(exported, fmt, images)
    difference = float(np.abs(expected - got).max())
    agreement = float((expected.argmax(1) == got.argmax(1)).mean())
    return difference, agreement


def predict_exported(exported, files, batch_size=32):
    """Probabilities of an exported model for ``files``, each image prepared exactly as
    its preprocessing spec says (which is what every ripik_clf model sees), in batches
    (the exported model is loaded once per batch, not once per image).

    Returns:
        (classes, probabilities ``(N, C)``, failures ``[(path, reason)]``).
    """
    from concurrent.futures import ThreadPoolExecutor

    from ripik_clf.data.images import decoded_batches

    spec = find_preprocessing_spec(exported)
    fmt = export_format(exported)
    probabilities = np.zeros((len(files), len(spec["classes"])))
    failures = []
    paths = [str(f) for f in files]
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = decoded_batches(paths, spec["input"]["shape"][1], batch_size, pool)
        for positions, images, failed in batches:
            failures += failed
            if len(positions):
                got = np.asarray(run_export(exported, fmt, images.astype("float32")))
                if got.shape != (len(positions), len(spec["classes"])):
                    raise UserError(
                        f"{exported} gives outputs of shape {got.shape[1:]}, its "
                        f"preprocessing spec names {len(spec['classes'])} classes: export "
                        "it again (python -m ripik_clf export)"
                    )
                probabilities[positions] = got
    return spec["classes"], probabilities, failures


def export_checked(config, run, fmt, out_dir, quantize="none", check_images=256):
    """Export a run's model and compare it with the Keras model on up to
    ``check_images`` images the run never trained on; refuse an export that disagrees.

    Returns:
        (exported path, images checked, max |p - p_keras|, arg-max agreement).
    """
    from ripik_clf.data.splits import refuse_other_split, saved_split_record

    model_path = resolve_model_file(config.workdir, run)
    record = wd.read_run_record(model_path.parent, for_model=model_path)
    refuse_other_split(model_path.parent.name, record.split, saved_split_record(config.workdir))
    say(f"export: converting {model_path} to {fmt} (about half a minute on a CPU)...")
    target = export_model(model_path, fmt, out_dir, quantize)
    images = _held_out_images(config, record, model_path, check_images)
    say(f"export: checking {target} against the Keras model on {len(images)} held-out images...")
    difference, agreement = check_export(model_path, target, fmt, images)
    if agreement < MIN_AGREEMENT:
        raise UserError(
            f"the export disagrees with the Keras model on {1 - agreement:.2%} of "
            f"the check images (allowed: {1 - MIN_AGREEMENT:.1%})"
        )
    return target, len(images), difference, agreement


def _held_out_images(config, record, model_path, count):
    """Up to ``count`` decoded images the run never trained on (its validation split)."""
    from ripik_clf.data.images import BadImage, load_for_model
    from ripik_clf.data.splits import recorded_split

    table, _ = recorded_split(config, check=False)  # any of them will do
    held_out = table[table["image"].isin(set(record.held_out or []))]
    images, unreadable = [], []
    for path in held_out["path"]:
        if len(images) == count:
            break
        try:
            images.append(load_for_model(path, record.image_size))
        except BadImage as err:  # went bad since training: checked on the others
            unreadable.append((path, str(err)))
    if unreadable:
        path, why = unreadable[0]
        print(
            f"warning: {len(unreadable)} validation image(s) unreadable, not used to check "
            f"the export; first: {path} ({why})",
            file=sys.stderr,
        )
    if not images:
        raise UserError(
            f"no readable validation image of run {model_path.parent.name} in the split of "
            f"{config.workdir} to check the export against (restore the data the split "
            "was made of, or retrain the run)"
        )
    return np.stack(images).astype("float32")
