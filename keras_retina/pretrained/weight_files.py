"""Reading published weight files without torch or detectron2, never executing their content.

Formats:
- torchvision `.pth` (`torch.save`'s zip format): a zip holding `<name>/data.pkl`, a pickle
  whose tensors point at raw storages `<name>/data/<key>`, and `<name>/byteorder`.
- detectron2 model zoo `.pkl`: a pickle of {"model": {name: numpy array}, ...} (Python 2 era
  files included: strings read as latin-1).

Both are untrusted input. A pickle can name any Python callable and have it called; this
reader's unpickler resolves only the names needed to rebuild arrays and dicts (`_ALLOWED`),
each mapped to our own function, so nothing from the file is imported or executed. Any other
name, a storage that is missing or too short, strides that would read outside their storage,
a truncated zip or pickle: a `DataError` naming the file and the problem.

`read_weights(path)` -> dict name -> numpy array (the state dict; detectron2's "model" entry).
"""

import collections
import io
import os
import pickle
import zipfile

import numpy as np

from keras_retina.errors import DataError

# torch storage classes -> numpy dtypes (bfloat16 is read as its bits and widened to float32)
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
MAX_TENSOR_ELEMENTS = 1 << 31  # a RetinaNet's largest tensor has 2.4M; refuse absurd shapes before allocating


class _StateDict(collections.OrderedDict):
    """OrderedDict that also takes the attributes torch pickles onto a state dict (`_metadata`)."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)


class _Storage:
    def __init__(self, dtype, key):
        self.dtype, self.key = dtype, key


def _storage_class(name):
    def make(*_):
        raise pickle.UnpicklingError(f"torch.{name} called directly")

    make.storage_dtype = _STORAGE_DTYPES[name]
    return make


def _bfloat16_to_float32(raw):
    return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)


class _Unpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED` names; torch storages through `persistent_load`."""

    def __init__(self, file, what, storages=None):
        super().__init__(file, encoding="latin1")
        self.what = what
        self.storages = storages or {}

    def find_class(self, module, name):
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise DataError(f"{self.what}: refuses to load {module}.{name}: a weight file may only hold tensors, "
                            f"numbers and dicts (this one names other Python code, which is never run).")
        return allowed

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise DataError(f"{self.what}: unknown persistent reference {str(pid)[:80]}.")
        storage_class, key, numel = pid[1], str(pid[2]), pid[4]
        dtype = getattr(storage_class, "storage_dtype", None)
        if dtype is None or not isinstance(numel, int) or numel < 0:
            raise DataError(f"{self.what}: storage {key} has an unknown type or size.")
        if key not in self.storages:
            self.storages[key] = self.load_storage(key, dtype, numel)
        return self.storages[key]

    def load_storage(self, key, dtype, numel):
        raise DataError(f"{self.what}: storage {key} referenced outside a torch zip file.")


def _rebuild_tensor(storage, offset, size, stride, *_):
    """torch._utils._rebuild_tensor_v2: a view of `storage`, bounds checked, copied."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise pickle.UnpicklingError("a tensor without its storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or min(size + stride + (int(offset),), default=0) < 0:
        raise pickle.UnpicklingError(f"tensor shape {size} / stride {stride} / offset {offset} is invalid")
    count = int(np.prod(size, dtype=np.int64)) if size else 1
    if count > MAX_TENSOR_ELEMENTS:
        raise pickle.UnpicklingError(f"tensor of shape {size} is too large")
    if count == 0:
        return np.zeros(size, storage.dtype)
    last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise pickle.UnpicklingError(f"tensor of shape {size} reads beyond its storage of {storage.size} elements")
    view = np.lib.stride_tricks.as_strided(storage[int(offset):], shape=size,
                                           strides=[s * storage.itemsize for s in stride], writeable=False)
    return np.array(view)


def _rebuild_parameter(data, *_):
    return data


def _reconstruct(cls, shape, dtype_code):
    """numpy.core.multiarray._reconstruct, for numpy.ndarray only (detectron2's pickles)."""
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("only numpy.ndarray may be reconstructed")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _dtype(name, *_):
    dtype = np.dtype(name)
    if dtype.hasobject:
        raise pickle.UnpicklingError("arrays of Python objects are refused")
    return dtype


def _scalar(dtype, data):
    """numpy.core.multiarray.scalar: a numpy number from its bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, str)):
        raise pickle.UnpicklingError("bad numpy scalar")
    data = data.encode("latin1") if isinstance(data, str) else data
    return np.frombuffer(data, dtype, count=1)[0]


def _encode(text, encoding="utf-8"):
    """_codecs.encode, as protocol-2 pickles of Python 3 bytes use it: text -> bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8"):
        raise pickle.UnpicklingError("bad bytes record")
    return text.encode(encoding)


_ALLOWED = {
    ("_codecs", "encode"): _encode,
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _storage_class(name) for name in _STORAGE_DTYPES},
    **{(module, "_reconstruct"): _reconstruct for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


def _arrays(value, what):
    """The state dict inside a loaded object: {name: array}, detectron2's "model" entry."""
    if isinstance(value, dict) and isinstance(value.get("model"), dict):
        value = value["model"]
    elif isinstance(value, dict) and isinstance(value.get("state_dict"), dict):
        value = value["state_dict"]
    if not isinstance(value, dict):
        raise DataError(f"{what}: holds a {type(value).__name__}, not a state dict of named tensors.")
    arrays = {str(k): v for k, v in value.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise DataError(f"{what}: holds no tensors.")
    return arrays


def _read_torch_zip(path):
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise DataError(f"{path}: a zip file, but not one torch.save wrote (no single data.pkl).")
        prefix = pickles[0][:-len("data.pkl")]
        big_endian = prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big"

        class TorchUnpickler(_Unpickler):
            def load_storage(self, key, dtype, numel):
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise DataError(f"{path}: storage {key} is missing.")
                raw = archive.read(name)
                if dtype == "bfloat16":
                    array = _bfloat16_to_float32(raw[:2 * numel])
                else:
                    array = np.frombuffer(raw, np.dtype(dtype).newbyteorder(">" if big_endian else "<"),
                                          count=min(numel, len(raw) // np.dtype(dtype).itemsize))
                if array.size != numel:
                    raise DataError(f"{path}: storage {key} holds {array.size} of its {numel} elements (truncated).")
                return array.astype(array.dtype.newbyteorder("="))

        return TorchUnpickler(io.BytesIO(archive.read(pickles[0])), path).load()
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
        raise DataError(f"{path}: a damaged or truncated zip ({type(error).__name__}: {str(error)[:120]}).") from None


def read_weights(path):
    """dict name -> numpy array of a torchvision `.pth` or a detectron2 `.pkl` (module docstring)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:
        raise DataError(f"{path}: cannot read it ({error.strerror or error}).") from None
    try:
        if head.startswith(b"PK"):
            loaded = _read_torch_zip(path)
        elif head[:1] == b"\x80":
            with open(path, "rb") as f:
                loaded = _Unpickler(f, path).load()
            if isinstance(loaded, int):  # torch's legacy format starts with a pickled magic number
                raise DataError(f"{path}: torch's legacy (pre-1.6) format; load it with torch and save it again "
                                f"(torch.save writes the zip format this reader takes).")
        else:
            raise DataError(f"{path}: neither a torch .pth (zip) nor a pickle (.pkl).")
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            MemoryError, OverflowError) as error:
        raise DataError(f"{path}: not a readable weight file ({type(error).__name__}: {str(error)[:160]}).") from None
    return _arrays(loaded, path)
