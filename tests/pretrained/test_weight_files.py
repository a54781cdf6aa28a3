"""Reading torchvision .pth and detectron2 .pkl files without torch, never running their code.

The torch zip format is written here by the standard pickle module with stand-in `torch`
modules (so the test needs no torch); with torch installed, a file `torch.save` wrote is read too.
"""

import collections
import io
import os
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

from keras_retina.errors import DataError
from keras_retina.pretrained.weight_files import read_weights


class _Stored:
    """A torch storage stand-in: its elements, dtype name and key in the zip."""

    def __init__(self, key, values, storage="FloatStorage"):
        self.key, self.values, self.storage = key, values, storage


class _Tensor:
    def __init__(self, stored, offset, size, stride):
        self.args = (stored, offset, size, stride)


@pytest.fixture
def fake_torch(monkeypatch):
    """`torch`, `torch._utils` modules with the names a state dict pickle refers to."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage", "BFloat16Storage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _write_pth(path, state, fake_torch, truncate_storage=None, extra_entries=()):
    """The layout torch.save writes: archive/data.pkl, archive/data/<key>, archive/byteorder."""
    stores = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Stored):
                stores[obj.key] = obj
                return ("storage", getattr(fake_torch, obj.storage), obj.key, "cpu", len(obj.values))
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                stored, offset, size, stride = obj.args
                return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                        (stored, offset, size, stride, False, collections.OrderedDict()))
            return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, stored in stores.items():
            if stored.storage == "BFloat16Storage":
                raw = (np.asarray(stored.values, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
            else:
                raw = np.asarray(stored.values, np.int64 if stored.storage == "LongStorage" else np.float32).tobytes()
            archive.writestr(f"archive/data/{key}", raw[:truncate_storage] if key == "0" and truncate_storage else raw)
        for name, data in extra_entries:
            archive.writestr(name, data)


def test_torch_zip_tensors_views_and_dtypes(tmp_path, fake_torch):
    weights = np.arange(24, dtype=np.float32)
    state = collections.OrderedDict([
        ("conv.weight", _Tensor(_Stored("0", weights), 0, (2, 3, 4), (12, 4, 1))),
        ("conv.weight_t", _Tensor(_Stored("0", weights), 0, (4, 6), (1, 4))),  # a transposed view, same storage
        ("conv.bias", _Tensor(_Stored("0", weights), 20, (3,), (1,))),  # an offset into it
        ("bn.num_batches_tracked", _Tensor(_Stored("1", [7], "LongStorage"), 0, (), ())),
        ("half", _Tensor(_Stored("2", [1.5, -2.0, 0.25], "BFloat16Storage"), 0, (3,), (1,))),
    ])
    path = tmp_path / "model.pth"
    _write_pth(path, state, fake_torch)
    got = read_weights(path)
    np.testing.assert_array_equal(got["conv.weight"], weights.reshape(2, 3, 4))
    np.testing.assert_array_equal(got["conv.weight_t"], weights.reshape(6, 4).T)
    np.testing.assert_array_equal(got["conv.bias"], [20, 21, 22])
    assert got["bn.num_batches_tracked"].dtype == np.int64 and int(got["bn.num_batches_tracked"]) == 7
    np.testing.assert_array_equal(got["half"], np.float32([1.5, -2.0, 0.25]))


def test_detectron2_pickle_of_numpy_arrays(tmp_path):
    model = {"backbone.bottom_up.stem.conv1.weight": np.random.default_rng(0).normal(size=(4, 3, 7, 7)),
             "head.cls_score.bias": np.full(9, -4.59, np.float32), "pixel_mean": np.float32([103.53, 116.28, 123.675])}
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": model, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True},
                                  protocol=2))
    got = read_weights(path)
    assert set(got) == set(model)
    for name, value in model.items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].dtype == value.dtype


class _Attack:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


class _ShellAttack:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, fake_torch, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "created-by-pickle"
    bare = tmp_path / "evil.pkl"
    bare.write_bytes(pickle.dumps({"model": {"w": _Attack(str(target))}}, protocol=2))
    with pytest.raises(DataError, match=r"evil.pkl: refuses to load (builtins|io).open: a weight file may only hold"):
        read_weights(bare)
    shell = tmp_path / "shell.pkl"
    shell.write_bytes(pickle.dumps([_ShellAttack()], protocol=2))
    with pytest.raises(DataError, match=r"refuses to load (posix|os|nt).system"):
        read_weights(shell)
    zipped = tmp_path / "evil.pth"
    _write_pth(zipped, collections.OrderedDict([("w", _Attack(str(target)))]), fake_torch)
    with pytest.raises(DataError, match="refuses to load (builtins|io).open"):
        read_weights(zipped)
    assert not target.exists() and not (tmp_path / "pwned-by-pickle").exists()


def test_broken_files_are_named_errors(tmp_path, fake_torch):
    weights = np.arange(12, dtype=np.float32)
    good = tmp_path / "good.pth"
    _write_pth(good, {"w": _Tensor(_Stored("0", weights), 0, (3, 4), (4, 1))}, fake_torch)
    cases = {}
    cases["truncated.pth"] = good.read_bytes()[:200]
    short = tmp_path / "short.pth"
    _write_pth(short, {"w": _Tensor(_Stored("0", weights), 0, (3, 4), (4, 1))}, fake_torch, truncate_storage=20)
    cases["short.pth"] = short.read_bytes()
    beyond = tmp_path / "beyond.pth"
    _write_pth(beyond, {"w": _Tensor(_Stored("0", weights), 4, (3, 4), (4, 1))}, fake_torch)  # 4 past the end
    cases["beyond.pth"] = beyond.read_bytes()
    cases["random.bin"] = np.random.default_rng(0).bytes(500)
    cases["truncated.pkl"] = pickle.dumps({"model": {"w": weights}}, protocol=2)[:60]
    cases["list.pkl"] = pickle.dumps([1, 2, 3], protocol=2)
    cases["empty.pkl"] = pickle.dumps({"model": {}}, protocol=2)
    messages = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as error:
            read_weights(tmp_path / name)
        assert str(error.value).startswith(str(tmp_path / name)), error.value
        messages[name] = str(error.value)
    assert "truncated" in messages["truncated.pth"] or "damaged" in messages["truncated.pth"]
    assert "holds 5 of its 12 elements (truncated)" in messages["short.pth"]
    assert "reads beyond its storage of 12 elements" in messages["beyond.pth"]
    assert "neither a torch .pth (zip) nor a pickle" in messages["random.bin"]
    assert "not a state dict" in messages["list.pkl"] and "holds no tensors" in messages["empty.pkl"]
    with pytest.raises(DataError, match="cannot read it"):
        read_weights(tmp_path / "missing.pth")


def test_a_file_torch_saved(tmp_path):
    torch = pytest.importorskip("torch")  # the optional torch extra
    state = collections.OrderedDict(w=torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
                                    n=torch.tensor(5), b=torch.ones(3, dtype=torch.bfloat16))
    torch.save(state, tmp_path / "saved.pth")
    got = read_weights(tmp_path / "saved.pth")
    np.testing.assert_array_equal(got["w"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    assert int(got["n"]) == 5 and got["b"].tolist() == [1.0, 1.0, 1.0]
    # A module's state dict: parameters, BN buffers, and the _metadata torch attaches to it.
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    torch.save(module.state_dict(), tmp_path / "module.pth")
    got = read_weights(tmp_path / "module.pth")
    assert set(got) == set(module.state_dict())
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(got[name], value.numpy())
