"""Published weights by name: the registry (data), the download cache, and the one resolver.

`registry.json` (beside this module) holds an entry per name: the task ("detection": a COCO
RetinaNet to convert; "backbone": ImageNet weights of a backbone), source library, URL, the
publisher's checksum (torchvision's sha256 prefix from its file name, keras.applications' md5;
null where none is published: the sha256 is then recorded once the file has parsed as the weights
it claims to be, never before, and checked on every later use), size, architecture, categories,
published metric, inference settings, licence, recipe and where each was read.
`$KERAS_RETINA_REGISTRY` names a JSON file of more entries (an internal artefact store, the tests).

`fetch(name)` -> the file, downloaded once into the cache (`cache_dir()`:
`$KERAS_RETINA_HOME`, default `$XDG_CACHE_HOME/keras_retina` or `~/.cache/keras_retina`): to a
temporary name with a progress line, checked, then renamed, under a lock (two processes asking
at once get one download; partial files of a download that was killed are removed). A file that
fails its check right after this call downloaded it is removed; a file already in the cache (a
download of an earlier run, or one put there by hand) is never deleted: a failed check is a
DataError naming the file and what to do.
`$KERAS_RETINA_MIRROR` replaces the URL's scheme and host (`https://mirror/` + the URL's path).
`resolve_model_dir(name_or_path)` -> a model_dir: a path as it is, a detection entry's file
converted once into `cache_dir()/models/<name>`. Offline, a failed download is one DataError
naming the URL and the exact path where a file downloaded by hand is picked up.
"""

import difflib
import hashlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from keras_retina.errors import DataError, UsageError
from keras_retina.files import cache_home, exclusive, make_folder

REGISTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "registry.json")
TASKS = ("detection", "backbone")
MAX_BYTES = 2 << 30  # no published file is near this; a server sending more is refused
CHUNK = 1 << 20


def entries():
    """{name: entry} of the registry and of $KERAS_RETINA_REGISTRY."""
    with open(REGISTRY, encoding="utf-8") as f:
        found = json.load(f)
    extra = os.environ.get("KERAS_RETINA_REGISTRY")
    if extra:
        try:
            with open(extra, encoding="utf-8") as f:
                more = json.load(f)
        except (OSError, ValueError) as error:
            raise DataError(f"$KERAS_RETINA_REGISTRY={extra}: not a JSON registry ({error}).") from None
        if not isinstance(more, dict):
            raise DataError(f"$KERAS_RETINA_REGISTRY={extra}: not a JSON object of entries.")
        found.update(more)
    return found


def entry(name):
    """The registry entry of `name`; UsageError listing the close matches for an unknown one."""
    known = entries()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"{name!r} is neither a file or folder nor a registered model.{hint} "
                         f"`keras_retina models` lists them.")
    return known[name]


def is_name(value):
    """Whether `value` names a registry entry rather than a path (an existing path wins). A value that
    is no path but starts like the registry's names (`torchvision/...`) and names no entry is a
    misspelt name: UsageError with the close matches (`entry`)."""
    if not value or os.path.exists(value):
        return False
    known = entries()
    if value in known:
        return True
    if "/" in value and value.split("/", 1)[0] in {name.split("/", 1)[0] for name in known}:
        entry(value)
    return False


cache_dir = cache_home  # $KERAS_RETINA_HOME, else ~/.cache/keras_retina


def _url(url):
    mirror = os.environ.get("KERAS_RETINA_MIRROR")
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + urllib.parse.urlsplit(url).path.lstrip("/")


def _digest(path, algorithm):
    digest = hashlib.md5(usedforsecurity=False) if algorithm == "md5" else hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path, checksum, recorded):
    """None when `path` matches the publisher's checksum (or the sha256 recorded at the first
    download, when none is published); else the mismatch, as text."""
    if checksum:
        algorithm = "md5" if checksum["algorithm"] == "md5" else "sha256"
        actual = _digest(path, algorithm)
        expected = checksum["value"]
        matches = actual.startswith(expected) if checksum["algorithm"] == "sha256_prefix" else actual == expected
        shown = actual[:len(expected)] if checksum["algorithm"] == "sha256_prefix" else actual
        return None if matches else f"{algorithm} {shown}, expected {expected}"
    if os.path.isfile(recorded):
        with open(recorded, encoding="utf-8") as f:
            expected = f.read().strip()
        actual = _digest(path, "sha256")
        return None if actual == expected else f"sha256 {actual}, recorded at its first download {expected}"
    return None


def fetch(name):
    """The downloaded, checked file of registry entry `name` (module docstring)."""
    item = entry(name)
    folder = os.path.join(cache_dir(), "downloads", name.replace("/", "__"))
    filename = os.path.basename(urllib.parse.urlsplit(item["url"]).path)
    path = os.path.join(folder, filename)
    recorded = path + ".sha256"
    make_folder(folder, "the download cache: $KERAS_RETINA_HOME, else ~/.cache/keras_retina")
    with exclusive(folder, f"keras_retina download of {name}", wait=True):
        for leftover in os.listdir(folder):  # under the lock: no live process is writing these
            if leftover.startswith(f"{filename}.part-"):
                os.remove(os.path.join(folder, leftover))
        if os.path.isfile(path):
            problem = _check(path, item.get("checksum"), recorded) or _unparsed(path, item, recorded)
            if problem is not None:
                raise DataError(f"{path}: {problem}. It was not downloaded by this run, so it is left as it is: "
                                f"remove it (and {os.path.basename(recorded)} beside it, if any) to download it "
                                f"again, or put the right file there.")
            return path
        url = _url(item["url"])
        _download(url, path, name)
        problem = _check(path, item.get("checksum"), recorded) or _unparsed(path, item, recorded)
        if problem is not None:
            os.remove(path)
            raise DataError(f"{url}: the downloaded file's {problem}; removed. The file changed at its source or "
                            f"on the way (a proxy, a mirror?); nothing was used.")
    return path


def _unparsed(path, item, recorded):
    """For an entry without a published checksum whose file has no recorded sha256 yet: None when the
    file parses as the weights its format names (its sha256 is then recorded), else the problem."""
    if item.get("checksum") or os.path.isfile(recorded):
        return None
    try:
        if item["format"] == "keras_h5":
            import h5py

            with h5py.File(path, "r"):
                pass
        else:
            from keras_retina.pretrained.weight_files import read_weights

            if not read_weights(path):
                return "content holds no tensors"
    except DataError as error:
        return f"content is not {item['format']} weights ({str(error).replace(path + ': ', '')})"
    except OSError as error:
        return f"content is not {item['format']} weights ({error})"
    with open(recorded + ".tmp", "w", encoding="utf-8") as f:
        f.write(_digest(path, "sha256") + "\n")
    os.replace(recorded + ".tmp", recorded)
    return None


def _download(url, path, name):
    """`url` -> `path`, through `path`.part-<pid> renamed only when the whole file arrived."""
    temporary = f"{path}.part-{os.getpid()}"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "keras-retina"})
        with urllib.request.urlopen(request, timeout=60) as response, open(temporary, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            if total > MAX_BYTES:
                raise DataError(f"{url}: the server announces {total:,} bytes; refused (more than {MAX_BYTES:,}).")
            done, shown, start = 0, -1, time.time()
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                done += len(block)
                if done > MAX_BYTES:
                    raise DataError(f"{url}: more than {MAX_BYTES:,} bytes; refused.")
                percent = int(100 * done / total) if total else -1
                if percent != shown and (percent % 10 == 0 or percent < 0):
                    shown = percent
                    size = f"{done / 2**20:.1f}" + (f" of {total / 2**20:.1f} MiB ({percent}%)" if total else " MiB")
                    print(f"\rdownloading {name}: {size}, {time.time() - start:.0f} s", end="", file=sys.stderr,
                          flush=True)
            print(file=sys.stderr, flush=True)
            if total and done != total:
                raise DataError(f"{url}: the connection closed after {done:,} of {total:,} bytes; run again to "
                                f"fetch it anew.")
        os.replace(temporary, path)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise DataError(f"cannot download {name} from {url} ({reason}). Offline? Download {os.path.basename(path)} "
                        f"by hand and put it at {path}; it is picked up from there.") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def resolve_model_dir(value):
    """A model_dir for `value`: a path as it is; a detection entry's name converted once into the
    cache (`cache_dir()/models/<name>`), so every later use reads it from there."""
    if not is_name(value):
        return value
    item = entry(value)
    if item["task"] != "detection":
        raise UsageError(f"{value} is a backbone's ImageNet weights, not a detector: give it as --backbone_weights.")
    target = os.path.join(cache_dir(), "models", value.replace("/", "__"))
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    weights = fetch(value)
    from keras_retina.pretrained.convert import convert

    with exclusive(os.path.join(cache_dir(), "models"), f"keras_retina conversion of {value}", wait=True):
        if not os.path.isfile(os.path.join(target, "config.json")):
            shutil.rmtree(target, ignore_errors=True)  # a conversion killed half-way
            print(f"converting {value} once into {target}", flush=True)
            convert(item["format"], weights, target)
    return target


def format_entries():
    """The `keras_retina models` table: name, task, published metric, size, licence, cached."""
    lines = [f"{'name':<44} {'task':<9} {'published metric':<34} {'MiB':>6}  cached  licence"]
    for name, item in sorted(entries().items()):
        folder = os.path.join(cache_dir(), "downloads", name.replace("/", "__"))
        cached = os.path.isdir(folder) and any(
            not n.startswith(".") and ".part-" not in n and not n.endswith(".sha256") for n in os.listdir(folder))
        size = f"{item['mib']:.0f}" if item.get("mib") else "?"
        lines.append(f"{name:<44} {item['task']:<9} {item['metric']:<34} {size:>6}  {'yes' if cached else 'no':<6}  "
                     f"{item['licence']}")
    lines.append(f"cache: {cache_dir()} ($KERAS_RETINA_HOME); mirror: $KERAS_RETINA_MIRROR")
    return "\n".join(lines)


def backbone_weights(name, backbone):
    """(path for `build_backbone`, or None; the torchvision state dict to load, or None) of a
    backbone entry for `backbone` (UsageError when the entry is for another backbone)."""
    item = entry(name)
    if item["task"] != "backbone":
        raise UsageError(f"--backbone_weights={name} is a detector; start from it with --init_from={name}.")
    if item["backbone"] != backbone:
        raise UsageError(f"--backbone_weights={name} holds {item['backbone']} weights; give "
                         f"--backbone={item['backbone']} (got --backbone={backbone}).")
    path = fetch(name)
    if item["format"] == "keras_h5":
        return path, None
    from keras_retina.pretrained.weight_files import read_weights

    return None, read_weights(path)


def from_pretrained(name):
    """The RetinaNet of a registered detector (downloaded and converted once) or of a model_dir,
    with its label map as `model.label_map`."""
    from keras_retina.model_dir import ModelDir

    model, label_map, _, _ = ModelDir(resolve_model_dir(name)).load_model()
    model.label_map = label_map
    return model
