"""An object store for the batch tests: `store://bucket/key`, a Beam filesystem that behaves as GCS and S3 do.

Importing this module registers it with Beam (Beam finds every FileSystem subclass). Objects are
files under $KERAS_RETINA_TEST_STORE; as in an object store there are no folders (a key's
"folder" does not exist, listing a prefix lists every key below it), writing a key needs no
folder made first, and a rename copies the object over whatever the new key held. It lets the
tests run detect-batch and write-records on URIs, through the same code a gs:// or s3:// run takes
(Beam's FileSystems, never `open`), without a cloud account.
"""

import os
import shutil

from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata, FileSystem

SCHEME = "store"


def _root():
    return os.environ["KERAS_RETINA_TEST_STORE"]


def local(url):
    """The file holding the object `url` (store://bucket/key)."""
    assert url.startswith(f"{SCHEME}://"), url
    return os.path.join(_root(), url[len(SCHEME) + 3:])


class StoreError(Exception):
    """What a store's client raises for an object it cannot give."""


class StoreFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass  # no folders

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for folder, _, files in os.walk(_root()):
            for name in files:
                url = f"{SCHEME}://{os.path.relpath(os.path.join(folder, name), _root())}"
                if url.startswith(dir_or_prefix):
                    yield self.metadata(url)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        os.makedirs(os.path.dirname(local(path)), exist_ok=True)
        return open(local(path), "wb")

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        if not self.exists(path):  # as google.cloud's NotFound and boto's errors: not an OSError
            raise StoreError(f"404 No such object: {path}")
        return open(local(path), "rb")

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            os.makedirs(os.path.dirname(local(destination)), exist_ok=True)
            shutil.copyfile(local(source), local(destination))

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)  # over the old object, as GCS and S3 do
        self.delete(source_file_names)

    def exists(self, path):
        return os.path.isfile(local(path))

    def size(self, path):
        return os.path.getsize(local(path))

    def last_updated(self, path):
        return os.path.getmtime(local(path))

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        missing = {path: FileNotFoundError(path) for path in paths if not self.exists(path)}
        if missing:
            raise BeamIOError("Delete operation failed", missing)
        for path in paths:
            os.remove(local(path))


if __name__ == "__main__":  # python tests/object_store.py COMMAND FLAGS...: a keras_retina command that reads store://
    import sys

    from keras_retina.cli.main import run

    run(sys.argv[1:])
