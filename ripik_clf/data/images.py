"""Reading any supported image file as 8-bit RGB, or saying exactly why not.

Every stage reads images through :func:`read_rgb`, so a CMYK JPEG, a 16-bit PNG or a
phone photo with an EXIF rotation looks the same to augmentation, training and
prediction.
"""

import hashlib
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ripik_clf.config import DEFAULT_MAX_PIXELS

# File extensions we look at when discovering a dataset (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# Formats as Pillow names them after sniffing the bytes; the extension is not trusted
# (web scrapers save GIFs as .jpg). MPO is the multi-picture JPEG many phones write.
# Animated files (GIF, WebP, MPO, multi-page TIFF) are read as their first frame.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF", "GIF")
# Default refusal threshold: 100 megapixels (e.g. 10,000 x 10,000). A decompression
# bomb (30,000 x 30,000) is refused from its header, before any pixel is decoded.

# We enforce our own limit from the header; Pillow's own check would raise mid-way.
Image.MAX_IMAGE_PIXELS = None


def file_sha1(path):
    """The sha1 of a file's bytes (hex), the key of every content-keyed cache and of the
    split's content check; None when the file cannot be read (the decoder names why)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha1").hexdigest()
    except OSError:
        return None


# What a decoder raises on bad bytes besides OSError: Pillow's format plugins raise
# ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
# ZeroDivisionError ... for malformed headers. Every one is a bad image, never a
# traceback (KeyboardInterrupt and SystemExit are not Exceptions: they still stop).
DECODER_ERRORS = (Exception,)


class BadImage(Exception):
    """A file that is not a usable image; ``str(err)`` is the reason shown to the user."""


def probe(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Check a file's header (cheap: no pixel decoding).

    Args:
        path: an image file, or an image file's bytes (the Python API).

    Returns:
        (format, width, height) as Pillow reports them.

    Raises:
        BadImage: empty file, not an image, unsupported format, or too many pixels.
    """
    try:
        if (len(path) if _is_bytes(path) else Path(path).stat().st_size) == 0:
            raise BadImage("empty file (0 bytes)")
        with Image.open(_readable(path)) as im:
            fmt, (width, height) = im.format, im.size
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised content)") from None
    except OSError as err:
        raise BadImage(f"cannot open: {err}") from None
    except DECODER_ERRORS as err:
        raise BadImage(f"unreadable header ({type(err).__name__}: {err})") from None
    if fmt not in SUPPORTED_FORMATS:
        raise BadImage(f"unsupported format {fmt} (supported: {', '.join(SUPPORTED_FORMATS)})")
    if width * height > max_pixels:
        raise BadImage(
            f"too large: {width}x{height} pixels exceeds the limit of {max_pixels:,} "
            "(possible decompression bomb)"
        )
    return fmt, width, height


def median_shorter_side(paths, sample=200):
    """The median shorter side, in pixels, of up to ``sample`` of ``paths`` (evenly
    spaced, headers only: milliseconds); None when none can be read."""
    step = max(1, len(paths) // sample)
    sides = []
    for path in list(paths)[::step][:sample]:
        try:
            sides.append(min(probe(path, max_pixels=float("inf"))[1:]))
        except BadImage:
            continue  # the split's own check names unreadable images
    return int(np.median(sides)) if sides else None


def _is_bytes(source):
    return isinstance(source, (bytes, bytearray, memoryview))


def _readable(source):
    """What Pillow opens: a path, or the bytes of a file as a file object."""
    return io.BytesIO(bytes(source)) if _is_bytes(source) else Path(source)


def read_rgb(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode an image file to an ``(H, W, 3) uint8`` RGB array, upright.

    EXIF orientation is applied; grayscale, palette, RGBA (alpha dropped), CMYK and
    16-bit images are converted to 8-bit RGB.

    Raises:
        BadImage: anything :func:`probe` refuses, or pixel data that fails to decode
            (truncated or corrupt).
    """
    probe(path, max_pixels)
    try:
        with Image.open(_readable(path)) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb8(im)
    except OSError as err:
        raise BadImage(f"corrupt or truncated image data: {err}") from None
    except DECODER_ERRORS as err:
        raise BadImage(f"corrupt image ({type(err).__name__}: {err})") from None


def _to_rgb8(im):
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale: Pillow's convert("RGB") would clip at 255 instead of scaling.
        gray = np.asarray(im, dtype=np.float64) / 257.0
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode == "F":
        gray = np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def resize_square(image, size):
    """Resize to ``size`` x ``size`` (area filter when shrinking, as the recipe's Resize)."""
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def load_for_model(path, size, max_pixels=DEFAULT_MAX_PIXELS):
    """What every model sees: the upright RGB image squashed to ``size`` x ``size``."""
    return resize_square(read_rgb(path, max_pixels), size)


def decoded_batches(paths, size, batch_size, pool):
    """Yield ``(indices, images, failures)`` per batch of ``paths``, in order.

    ``images`` is a uint8 array of the readable images (their positions in ``indices``);
    ``failures`` lists ``(path, reason)``. The next batch decodes on ``pool`` (a thread
    pool: Pillow and OpenCV release the GIL) while the caller works on this one; only one
    batch is ever held ahead, so memory does not grow with the number of images.
    """
    batches = [range(i, min(i + batch_size, len(paths))) for i in range(0, len(paths), batch_size)]

    def decode(batch):
        return pool.submit(lambda: [_load_or_reason(paths[i], size) for i in batch])

    pending = decode(batches[0]) if batches else None
    for k, batch in enumerate(batches):
        results = pending.result()
        if k + 1 < len(batches):
            pending = decode(batches[k + 1])
        ok = [i for i, r in zip(batch, results) if not isinstance(r, str)]
        failures = [(paths[i], r) for i, r in zip(batch, results) if isinstance(r, str)]
        images = [r for r in results if not isinstance(r, str)]
        stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
        yield ok, stacked, failures


def _load_or_reason(path, size):
    try:
        return load_for_model(path, size)
    except BadImage as err:
        return str(err)
