"""Exporting a trained model (SavedModel, TFLite, ONNX), checked against the Keras model."""

import json
import tempfile
from pathlib import Path

import numpy as np

from ripik_clf.atomic import atomic_write_text
from ripik_clf.errors import UserError

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic")
MIN_AGREEMENT = 0.995  # arg-max agreement with the Keras model on the check images


def resolve_model_file(workdir, run):
    """A run name (``WORKDIR/runs/<run>/full.keras``, else ``head.keras``) or a .keras path."""
    path = Path(run)
    if path.suffix == ".keras":
        if not path.exists():
            raise UserError(f"model file not found: {path}")
        return path
    folder = Path(workdir) / "runs" / run
    for name in ("full.keras", "head.keras"):
        if (folder / name).exists():
            return folder / name
    raise UserError(f"no trained model for run {run!r} in {folder} (train it first)")


def export_model(model_path, fmt, out_dir, quantize="none"):
    """Write the export; returns the path of the exported artefact."""

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
    model = serving_model(model_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = model_path.parent.name
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
    record = model_path.parent / "run.json"
    if record.exists():  # the class list travels with the export
        classes = json.loads(record.read_text())["classes"]
        (out_dir / f"{stem}_classes.json").write_text(json.dumps(classes))
        write_preprocessing_spec(out_dir / f"{stem}_preprocessing.json", target, fmt, record)
    return target


def write_preprocessing_spec(path, target, fmt, record_path):
    """What a consumer must do to an image before the exported model sees it: exactly
    what :func:`ripik_clf.data.images.load_for_model` does (resizing another way moves the
    probabilities; e.g. bilinear without antialiasing on a large photo)."""
    record = json.loads(Path(record_path).read_text())
    size = int(record["image_size"])
    earlier = json.loads(path.read_text()) if path.exists() else {}
    spec = {
        "input": {"shape": [None, size, size, 3], "layout": "NHWC", "dtype": "float32"},
        "channels": "RGB",
        "value_range": [0, 255],  # raw pixels: normalisation is inside the model
        "decode": "EXIF orientation applied; grayscale, palette, CMYK, 16-bit and alpha "
        "images converted to 8-bit RGB; animated files: first frame",
        "resize": f"to {size} x {size}, aspect ratio not kept; OpenCV cv2.resize with "
        "INTER_AREA when either side shrinks, INTER_LINEAR otherwise",
        "output": "softmax probabilities in the order of `classes`"
        + (", temperature applied" if record.get("temperature") else ""),
        "classes": record["classes"],
        "files": sorted({*earlier.get("files", {}), target.name}),
        "formats": sorted({*earlier.get("formats", []), fmt}),
    }
    atomic_write_text(path, json.dumps(spec, indent=2))


def find_preprocessing_spec(exported):
    """The spec written beside an exported file by :func:`write_preprocessing_spec`."""
    exported = Path(exported)
    for candidate in sorted(exported.parent.glob("*_preprocessing.json")):
        spec = json.loads(candidate.read_text())
        if exported.name in spec.get("files", []):
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
    model file (``run.json``), so the export's probabilities are the calibrated ones."""
    import keras

    from ripik_clf.predict.calibration import recorded_temperature, scaled_model

    model = keras.models.load_model(model_path)
    record = Path(model_path).parent / "run.json"
    if not record.exists():
        return model
    return scaled_model(model, recorded_temperature(json.loads(record.read_text()), model_path))


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
    """Probabilities of the exported artefact for ``images`` (float32 0-255 NHWC)."""
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
