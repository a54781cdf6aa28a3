"""A batch run's files: shards written whole, dead letters, the merged COCO results and the counts.

In `output_dir`, for each shard s of n (`inputs.deal`):
  detections-SSSSS-of-NNNNN.jsonl  one JSON line per picture, {"picture": uri, "height", "width",
                                   "detections": [{"bbox": [x, y, w, h] pixels, "score",
                                   "category_id", "name"}]}, and per detected video frame,
                                   {"video": uri, "frame", "time", "detections"} (the lines of
                                   `predict`'s .detections.jsonl); inputs in sorted order, a
                                   video's frames in order;
  failures-SSSSS-of-NNNNN.jsonl    the dead letters: {"input": uri, "reason"} of every input that
                                   could not be read (empty when none).
While the run detects, each work item's result is a file of its own, `parts/SSSSS/<input's
hash>-<part>.json` (`write_part`), written by the worker that detected it: results never gather in
one process, so memory stays flat however many pictures there are, and a rerun skips the items
already done (`has_part`). `combine_shard` then reads a shard's parts (inputs sorted, tiles merged
per picture) and writes its two files. Every file is written under a temporary name and renamed
into place, the failures before the detections: a shard whose detections file exists is finished,
whole, and a rerun skips it (`finished_shards`); a worker that dies or is retried rewrites the
same bytes. `merge_results` then writes detections.json (COCO results of every picture, image ids
as `predict` gives them) from the shards, line by line, and returns the run's counts.
"""

import hashlib
import json
import os
import uuid

import numpy as np

from keras_retina.inference.pictures import image_ids
from keras_retina.inference.tiling import TileParts, merge_tiles
from keras_retina.ops import boxes as box_lib


def shard_name(kind, shard, shards):
    return f"{kind}-{shard:05d}-of-{shards:05d}.jsonl"


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _join(folder, name):
    return _fs().join(folder, name) if "://" in folder else os.path.join(folder, name)


def finished_shards(output_dir, shards):
    return {s for s in range(shards) if _fs().exists(_join(output_dir, shard_name("detections", s, shards)))}


def remove_partials(output_dir):
    """Removes the temporary files of writes a crash cut short (never read: their shard is not finished)."""
    found = [m for pattern in ("*.partial-*", "parts/*/*.partial-*")
             for m in _fs().match([_join(output_dir, pattern)])[0].metadata_list]
    if found:
        _fs().delete([m.path for m in found])


def _write_whole(path, lines):
    """`lines` into `path` under a temporary name, then renamed into place."""
    temporary = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode("utf-8")
    if "://" in path:
        with _fs().create(temporary) as f:
            f.write(data)
        if _fs().exists(path):  # a retried bundle: the same bytes again
            _fs().delete([path])
        _fs().rename([temporary], [path])
    else:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)


def _detections(boxes, scores, classes, names):
    return [{"bbox": [float(v) for v in bbox], "score": float(score), "category_id": int(cls), "name": name}
            for bbox, score, cls, name in zip(box_lib.coco_bboxes(np.asarray(boxes, np.float32).reshape(-1, 4)),
                                              scores, classes, names)]


def shard_lines(results, tile_settings=None):
    """(detection lines, failure lines) of one shard's results (`work.do_work`), inputs sorted."""
    by_uri = {}
    for result in results:
        by_uri.setdefault(result["uri"], []).append(result)
    lines, failures = [], []
    for uri in sorted(by_uri):
        parts = sorted(by_uri[uri], key=lambda r: r["part"])
        failed = [r["error"] for r in parts if r["kind"] == "failed"]
        if not failed and len(parts) != parts[0]["parts"]:
            failed = [f"{len(parts)} of its {parts[0]['parts']} parts came back"]
        if failed:
            failures.append({"input": uri, "reason": failed[0]})
            continue
        kind = parts[0]["kind"]
        if kind == "frames":
            lines += [{"video": uri, **line} for part in parts for line in part["lines"]]
            continue
        if kind == "tiles":
            boxes, scores, classes, names = merge_tiles([tile for part in parts for tile in part["tiles"]],
                                                        tile_settings)
        else:
            boxes, scores, classes, names = (parts[0][k] for k in ("boxes", "scores", "classes", "names"))
        lines.append({"picture": uri, "height": int(parts[0]["height"]), "width": int(parts[0]["width"]),
                      "detections": _detections(boxes, scores, classes, names)})
    return lines, failures


def write_shard(shard, results, output_dir, shards, tile_settings=None):
    """Writes one shard's failures, then its detections (module docstring); returns its counts."""
    lines, failures = shard_lines(results, tile_settings)
    _write_whole(_join(output_dir, shard_name("failures", shard, shards)), failures)
    _write_whole(_join(output_dir, shard_name("detections", shard, shards)), lines)
    return {"shard": shard, "lines": len(lines), "failures": len(failures)}


def _parts_dir(output_dir, shard):
    return _join(_join(output_dir, "parts"), f"{shard:05d}")


def part_path(output_dir, uri, shard, part):
    return _join(_parts_dir(output_dir, shard), f"{hashlib.sha1(uri.encode()).hexdigest()[:20]}-{part:05d}.json")


def has_part(output_dir, work):
    return _fs().exists(part_path(output_dir, work.uri, work.shard, work.part))


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, TileParts):
        return {"boxes": value.boxes.tolist(), "scores": value.scores.tolist(), "classes": value.classes.tolist(),
                "cut": value.cut.tolist(), "names": {str(k): v for k, v in value.names.items()}}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def write_part(result, output_dir):
    """One work item's result (`work.do_work`, or a failed input) as its part file; returns its shard."""
    path = part_path(output_dir, result["uri"], result["shard"], result["part"])
    if "://" not in path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_whole(path, [_plain(result)])
    return result["shard"]


def _result(part):
    """A part file's result as `shard_lines` takes it (arrays and TileParts again)."""
    if "tiles" in part:
        part["tiles"] = [TileParts(np.asarray(t["boxes"], np.float64).reshape(-1, 4), np.asarray(t["scores"]),
                                   np.asarray(t["classes"], np.int64), np.asarray(t["cut"], bool),
                                   {int(k): v for k, v in t["names"].items()}) for t in part["tiles"]]
    if "boxes" in part:
        part["boxes"] = np.asarray(part["boxes"], np.float64).reshape(-1, 4)
    return part


def combine_shard(shard, output_dir, shards, tile_settings=None):
    """A shard's files from its part files (module docstring); the parts are removed after."""
    found = _fs().match([_join(_parts_dir(output_dir, shard), "*.json")])[0].metadata_list
    results = [_result(line) for m in sorted(found, key=lambda m: m.path) for line in _read_lines(m.path)]
    counts = write_shard(shard, results, output_dir, shards, tile_settings)
    if found:
        _fs().delete([m.path for m in found])
    _remove_empty(_parts_dir(output_dir, shard))
    return counts


def _remove_empty(folder):
    """A local folder left empty (object stores have no folders to remove)."""
    if "://" not in folder:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _read_lines(path):
    with _fs().open(path) as f:
        for raw in f.read().decode("utf-8").splitlines():
            if raw.strip():
                yield json.loads(raw)


def merge_results(output_dir, shards, pictures):
    """detections.json (COCO results of the pictures, `predict`'s image ids) and the run's counts:
    {"pictures", "videos", "frames", "detections", "failures": [{"input", "reason"}]}."""
    ids = dict(zip(pictures, image_ids(pictures)))
    counts = {"pictures": 0, "videos": set(), "frames": 0, "detections": 0, "failures": []}
    path = _join(output_dir, "detections.json")
    temporary = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    opened = _fs().create(temporary) if "://" in path else open(temporary, "wb")
    with opened as out:
        out.write(b"[")
        first = True
        for shard in range(shards):
            counts["failures"] += list(_read_lines(_join(output_dir, shard_name("failures", shard, shards))))
            for line in _read_lines(_join(output_dir, shard_name("detections", shard, shards))):
                counts["detections"] += len(line["detections"])
                if "video" in line:
                    counts["videos"].add(line["video"])
                    counts["frames"] += 1
                    continue
                counts["pictures"] += 1
                name = line["picture"].rstrip("/").rsplit("/", 1)[-1]
                for found in line["detections"]:
                    entry = {"image_id": ids[line["picture"]], "file_name": name, "category_id": found["category_id"],
                             "bbox": found["bbox"], "score": found["score"]}
                    out.write((b"" if first else b",") + json.dumps(entry).encode("utf-8"))
                    first = False
        out.write(b"]")
    if "://" in path:
        if _fs().exists(path):
            _fs().delete([path])
        _fs().rename([temporary], [path])
    else:
        os.replace(temporary, path)
    _remove_empty(_join(output_dir, "parts"))
    counts["videos"] = len(counts["videos"])
    counts["failures"].sort(key=lambda f: f["input"])
    return counts
