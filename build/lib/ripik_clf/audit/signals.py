"""Per-image signals for finding duplicates: digests, a perceptual hash, pixel spread.

The perceptual hash is the DCT hash (pHash): the image in grayscale at 32 x 32, its 2-D
DCT, and one bit per coefficient of the lowest 8 x 8 frequencies (above their median or
not). Re-encoding, resizing and mild colour changes move few of the 64 bits; two
different photos differ in about half. Written here (a few lines of SciPy) rather than
adding a dependency.
"""

import hashlib

import numpy as np
from PIL import Image
from scipy.fft import dct

from ripik_clf.data.images import BadImage, read_rgb

HASH_SIZE = 8  # 8 x 8 = 64 bits
BLANK_STD = 2.0  # grayscale standard deviation (0-255) below which an image is blank


def perceptual_hash(image):
    """The 64-bit DCT hash of an RGB ``uint8`` image, as 8 bytes (``uint8`` array)."""
    gray = Image.fromarray(image).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.float64)
    low = dct(dct(pixels, axis=0, norm="ortho"), axis=1, norm="ortho")[:HASH_SIZE, :HASH_SIZE]
    return np.packbits((low > np.median(low)).ravel())


_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


def hamming(hashes_a, hashes_b):
    """Bit distances between every row of ``hashes_a`` (A, 8) and ``hashes_b`` (B, 8)."""
    xor = np.bitwise_xor(hashes_a[:, None, :], hashes_b[None, :, :])
    return _POPCOUNT[xor].sum(axis=2, dtype=np.int32)


def image_signals(path):
    """Everything the audit needs from one file's bytes and pixels (None if unreadable).

    Returns:
        dict with ``file_sha1``, ``pixel_sha1`` (of the decoded, upright pixels), ``phash``,
        ``width``, ``height`` and ``gray_std``.
    """
    try:
        image = read_rgb(path)
    except BadImage:
        return None
    with open(path, "rb") as handle:
        file_sha1 = hashlib.sha1(handle.read()).hexdigest()
    pixel_sha1 = hashlib.sha1(f"{image.shape}".encode() + image.tobytes()).hexdigest()
    return {
        "file_sha1": file_sha1,
        "pixel_sha1": pixel_sha1,
        "phash": perceptual_hash(image),
        "height": image.shape[0],
        "width": image.shape[1],
        "gray_std": float(np.asarray(Image.fromarray(image).convert("L"), np.float64).std()),
    }
