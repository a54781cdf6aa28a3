"""keras_retina.batch.filesystem in the Beam environment (tests/beam_env.py): file:// URIs, what a
path Beam cannot reach says, files written whole on an object store, an object a store will not
give read as a failure, and where the workers can read a model from."""

from beam_env import needs_beam, run_beam_python

pytestmark = needs_beam

_SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[2])
os.environ["KERAS_RETINA_TEST_STORE"] = sys.argv[1]
import object_store
from apache_beam.io.filesystem import BeamIOError
from keras_retina.batch import filesystem as fs
from keras_retina.batch import work
from keras_retina.errors import UsageError


def refused(path, said=None, **kw):
    try:
        fs.check_path(path, said, **kw)
    except UsageError as error:
        return str(error)
    raise AssertionError(f"{path} was not refused")


assert fs.local("file:///data/my%20photo.jpg") == "/data/my photo.jpg"
assert fs.local("file:///data/p00?.jpg") == "/data/p00?.jpg" and fs.local("file:///data/a#1.jpg") == "/data/a#1.jpg"
assert fs.local("file://localhost/data/a.jpg") == "/data/a.jpg" and fs.local("/data/a.jpg") == "/data/a.jpg"
try:
    fs.local("file://server/data/a.jpg")
    raise AssertionError("file://server/... taken")
except UsageError as error:
    assert "a file:// URI names a file of this machine (file:///path), not of server" in str(error)
assert [fs.remove_slash(p) for p in ("gs://b/found/", "gs://b/", "out//", "/", "out")] == [
    "gs://b/found", "gs://b", "out", "/", "out"]
fs.check_path("store://bucket/x")  # a scheme Beam has a filesystem for
fs.check_path("relative/folder", folder=True)
assert refused("nosuch://bucket/a.jpg").startswith("nosuch://bucket/a.jpg: Beam has no filesystem for nosuch://")
assert refused("out*", "--output_dir=out*", folder=True).startswith("--output_dir=out*: a folder whose name holds")
assert 'pip install "apache-beam[aws]"' in refused("s3://bucket/a.jpg")  # the [beam] extra alone
assert 'pip install "apache-beam[hadoop]"' in refused("hdfs://host/a.jpg")
assert refused("hdfs://host/found", "--output_dir=hdfs://host/found", folder=True).startswith(
    "--output_dir=hdfs://host/found: a batch run cannot write to hdfs://")

fs.write_whole("store://bucket/a.json", b"old")
fs.write_whole("store://bucket/a.json", b"new")  # over the old object
assert fs.read_bytes("store://bucket/a.json") == b"new" and fs.match("store://bucket/*") == ["store://bucket/a.json"]
try:
    with fs.writing("store://bucket/c.json") as f:
        f.write(b"half")
        raise KeyboardInterrupt
except KeyboardInterrupt:
    pass
assert not fs.exists("store://bucket/c.json") and fs.match("store://bucket/c.json" + fs.PARTIAL[1:])
try:
    fs.delete(["store://bucket/gone.json"])
    raise AssertionError("deleted what is not there")
except BeamIOError as error:
    assert fs.unreachable(error) == "store://bucket/gone.json: store://bucket/gone.json", fs.unreachable(error)

# An object its store will not give (deleted since it was listed, forbidden): a worker's read error,
# which makes a failure line, whatever its client raises.
try:
    with work.local_file("store://bucket/gone.jpg"):
        raise AssertionError("read what is not there")
except OSError as error:
    assert str(error).startswith("store://bucket/gone.jpg: could not be read (404 No such object"), error
assert work.do_work(work.Work("store://bucket/gone.jpg", 0, "picture"), None, work.BatchSettings())["error"] \
    .startswith("store://bucket/gone.jpg: could not be read")

from keras_retina.batch.model_handler import ModelSpec, check_model_location
check_model_location(ModelSpec(saved_model="gs://bucket/serving/1"))  # TensorFlow reads gs:// itself
check_model_location(ModelSpec(model_dir="runs/mine"))
for spec, said in ((ModelSpec(saved_model="s3://bucket/serving/1"), "--saved_model=s3://bucket/serving/1: "
                    "TensorFlow reads a model from local paths and from gs://, not from s3://"),
                   (ModelSpec(model_dir="hdfs://host/runs/mine"), "--model_dir=hdfs://host/runs/mine: TensorFlow "
                    "reads a model from local paths and from gs://, not from hdfs://"),
                   (ModelSpec(model="store://bucket/model.tflite"), "--model=store://bucket/model.tflite: the LiteRT "
                    "and ONNX runtimes read a file of the worker's own disk")):
    try:
        check_model_location(spec)
        raise AssertionError(f"{spec} taken")
    except UsageError as error:
        assert str(error).startswith(said), error
print("ok")
"""


def test_uris_said_and_files_written_whole_on_other_filesystems(tmp_path):
    from conftest import REPO

    assert run_beam_python(_SCRIPT, tmp_path, f"{REPO}/tests").strip().endswith("ok")
