"""A batch run's files: shards written whole, dead letters, the merged COCO results and the counts.

In `output_dir`, for each shard s of n (`inputs.deal`):
  detections-SSSSS-of-NNNNN.jsonl  one JSON line per picture, {"picture": uri, "height", "width",
                                   "detections": [{"bbox": [x, y, w, h] pixels, "score",
                                   "category_id", "name"}]}, and per detected video frame,
                                   {"video": uri, "frame", "time", "detections"} (the lines of
                                   `predict`'s .detections.jsonl); inputs in sorted order, a
                                   video's frames in order;
  failures-SSSSS-of-NNNNN.jsonl    the dead letters: {"input": uri, "reason"} of every input that
                                   could not be read (empty when none); a video that stops early
                                   (truncated, or it cannot be decoded further) also has
                                   "frames_read" (the frames decoded, as predict counts them),
                                   and its frames before are in the detections.
While the run detects, each work item's result is a file of its own, `parts/SSSSS/<input's
hash>-<part>.json`, or `.failed.json` for an item that could not be read (`write_part`), written by
the worker that detected it: results never gather in one process, so memory stays flat however
many pictures there are, and a rerun skips the items already done (`has_part`) and tries the
failed ones again (`remove_unfinished`). `combine_shard` then reads a shard's parts (inputs sorted, tiles merged
per picture) and writes its two files. Every file is written under a temporary name and renamed
into place, the failures before the detections: a shard whose detections file exists is finished,
whole, and a rerun skips it (`finished_shards`); a retried item writes its part again (a success
beside an earlier failure of the same item counts), and a retried shard that is already written is
left as it is. `merge_results` then writes detections.json (COCO results of every picture, image ids
as `predict` gives them) from the shards, line by line, and returns the run's counts.
"""

import hashlib
import json
import os

import numpy as np

from keras_retina.batch import filesystem as fs
from keras_retina.inference import frame_ranges
from keras_retina.inference.pictures import image_ids
from keras_retina.inference.tiling import TileParts, merge_tiles
from keras_retina.inference.video import is_video
from keras_retina.ops import boxes as box_lib

FAILED = ".failed.json"  # a part file of an item that failed: not done (`has_part`), retried by a rerun


def shard_name(kind, shard, shards):
    return f"{kind}-{shard:05d}-of-{shards:05d}.jsonl"


def finished_shards(output_dir, shards):
    return {s for s in range(shards) if fs.exists(fs.join(output_dir, shard_name("detections", s, shards)))}


def remove_unfinished(output_dir, finished=()):
    """Before a run: removes the temporary files of writes a crash cut short (never read: their shard
    is not finished), the part files of items that failed in an unfinished shard, so the run tries
    those items again (a remote file that could not be read may read now), and the parts a crash
    left of the `finished` shards (written, not yet removed)."""
    patterns = [fs.PARTIAL, "parts/*/" + fs.PARTIAL, "parts/*/*" + FAILED]
    patterns += [f"parts/{shard:05d}/*" for shard in sorted(finished)]
    fs.delete([path for pattern in patterns for path in fs.match(fs.join(output_dir, pattern))])


def done_items(output_dir):
    """How many work items of unfinished shards are done (their part files; after `remove_unfinished`)."""
    return len(fs.match(fs.join(output_dir, "parts/*/*.json")))


def has_results(output_dir):
    """Whether a run into `output_dir` has finished any work (a part or a shard)."""
    return bool(fs.match(fs.join(output_dir, "detections-*-of-*.jsonl"))) or any(
        not path.endswith(FAILED) for path in fs.match(fs.join(output_dir, "parts/*/*.json")))


def _detections(boxes, scores, classes, names):
    return [{"bbox": [float(v) for v in bbox], "score": float(score), "category_id": int(cls), "name": name}
            for bbox, score, cls, name in zip(box_lib.coco_bboxes(np.asarray(boxes, np.float32).reshape(-1, 4)),
                                              scores, classes, names)]


def shard_lines(results, tile_settings=None):
    """(detection lines, failure lines) of one shard's results (`work.do_work`), inputs sorted."""
    by_part = {}  # a retried item may have left a failure beside its success: the success counts
    for result in results:
        key = (result["uri"], result["part"])
        if key not in by_part or by_part[key]["kind"] == "failed":
            by_part[key] = result
    by_uri = {}
    for (uri, _), result in by_part.items():
        by_uri.setdefault(uri, []).append(result)
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
        if kind == "frames":  # a video: the frames detected, and a failure too when it stopped early
            end, decoded, early = frame_ranges.video_end(uri, parts[0]["ends"],
                                                         [(p["last"], p["stopped"]) for p in parts])
            lines += [{"video": uri, **line} for part in parts for line in part["lines"] if line["frame"] < end]
            if early:  # its frames before are in the detections, as predict writes them
                failures.append({"input": uri, "reason": early, "frames_read": decoded})
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
    fs.write_json_lines(fs.join(output_dir, shard_name("failures", shard, shards)), failures)
    fs.write_json_lines(fs.join(output_dir, shard_name("detections", shard, shards)), lines)
    return {"shard": shard, "lines": len(lines), "failures": len(failures)}


def _parts_dir(output_dir, shard):
    return fs.join(fs.join(output_dir, "parts"), f"{shard:05d}")


def part_path(output_dir, uri, shard, part, failed=False):
    name = f"{hashlib.sha1(uri.encode()).hexdigest()[:20]}-{part:05d}"
    return fs.join(_parts_dir(output_dir, shard), name + (FAILED if failed else ".json"))


def has_part(output_dir, work):
    return fs.exists(part_path(output_dir, work.uri, work.shard, work.part))


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
    path = part_path(output_dir, result["uri"], result["shard"], result["part"], failed=result["kind"] == "failed")
    fs.write_json_lines(path, [_plain(result)])
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
    """A shard's files from its part files (module docstring); the parts are removed after. A shard
    already written (a retried bundle that wrote it before failing on another) is left as it is:
    its parts are gone, and writing it again would write it empty."""
    if fs.exists(fs.join(output_dir, shard_name("detections", shard, shards))):
        return {"shard": shard, "lines": None, "failures": None}
    found = sorted(fs.match(fs.join(_parts_dir(output_dir, shard), "*.json")))
    results = [_result(line) for path in found for line in fs.read_lines(path)]
    counts = write_shard(shard, results, output_dir, shards, tile_settings)
    fs.delete(found)
    _remove_empty(_parts_dir(output_dir, shard))
    return counts


def _remove_empty(folder):
    """A local folder left empty (object stores have no folders to remove)."""
    if fs.scheme(folder) is None:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def merge_results(output_dir, shards, inputs):
    """detections.json (COCO results of the pictures, `predict`'s image ids) and the run's counts:
    {"pictures", "videos" (read, whole or in part), "frames", "detections", "failures": [{"input", "reason"}]}."""
    pictures = [uri for uri in inputs if not is_video(uri)]
    ids = dict(zip(pictures, image_ids(pictures)))
    counts = {"pictures": 0, "videos": set(), "frames": 0, "detections": 0, "failures": []}
    path = fs.join(output_dir, "detections.json")
    with fs.writing(path) as out:
        out.write(b"[")
        first = True
        for shard in range(shards):
            counts["failures"] += list(fs.read_lines(fs.join(output_dir, shard_name("failures", shard, shards))))
            for line in fs.read_lines(fs.join(output_dir, shard_name("detections", shard, shards))):
                counts["detections"] += len(line["detections"])
                if "video" in line:
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
    _remove_empty(fs.join(output_dir, "parts"))
    unread = {f["input"] for f in counts["failures"] if "frames_read" not in f}  # a video read in part counts
    counts["videos"] = sum(1 for uri in inputs if is_video(uri) and uri not in unread)
    counts["failures"].sort(key=lambda f: f["input"])
    return counts
