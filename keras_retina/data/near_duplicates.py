"""Near-duplicate pictures: copies (re-saved, resized, recompressed) and overlapping views (crops, tiles of one scene).

A picture in both the training and the validation split makes the validation metrics a lie; so
do two tiles cut from one orthophoto with overlap, or a crop of a training photo. Each picture
gets three fingerprints (`fingerprint`, from its pixels):

- exact: a hash of its pixels (the same picture under another name or format);
- whole: a 64-bit difference hash (dHash: a 9 x 8 grey thumbnail, one bit per pair of
  neighbours) of the whole picture, which a re-save, a resize or recompression changes by a few
  bits at most: copies are within WHOLE_BITS bits. A flat picture (its thumbnail's neighbours
  differ by less than FLAT grey levels: fog, a blank sky, a lens cap) has none: its bits would be
  noise and every flat picture a "copy" of every other;
- patches: dHashes of the small patches around the picture's KEYPOINTS strongest corners
  (Shi and Tomasi's: where the brightness changes along both axes), with their positions, at the
  picture's own scale (reduced by a fixed factor, the same for every picture). A crop or a tile
  overlapping another holds the same corners with the same surroundings, shifted by one offset:
  two pictures with at least PATCH_MATCHES patch hashes in common (within PATCH_BITS bits) whose
  positions agree on one shift (to OFFSET_TOLERANCE reduced pixels), and that are SHARED_PEAKS
  (30%) of the corners inside the region that shift makes common, are overlapping views. The
  shift and the share rule out chance: textures and repeated objects share a few patches, one
  scene shares its corners.

`leakage(sources)`: the fingerprints of every picture of the splits ({split: source}, pictures
decoded as training reads them) and what they share: a JSON-ready dict, `format_leakage` the
lines check-data prints (every group spanning splits is a WARNING, naming its pictures).

`file_fingerprints(paths)`: the fingerprints of picture files, cached in
`files.cache_home()`/fingerprints (one JSON file per folder, an entry per picture keyed by its
name, size and modification time): a training start fingerprints only pictures it has not seen.
A picture TensorFlow cannot decode whole (a tiled TIFF, read window by window) is its own
scene. `scene_groups(paths)`: the groups of those files (lists of indices of two or more), what
`--val_fraction` keeps on one side (`data.splits`).

`find_near_duplicates(fingerprints)` compares no pair it need not: candidates come from
multi-index hashing (a 64-bit hash cut into 16-bit chunks: two hashes within 3 bits share a chunk
exactly, pigeonhole), so the work grows with the pictures and their near matches, not with every
pair. It returns groups (sets of indices joined by any match, union-find) and the matched pairs
with their kind ("exact", "copy", "overlap").

Our own rather than imagehash's crop-resistant hash (Steinebach et al., 2014): on tiles of a
NEON orthophoto overlapping by half it found 5 of 82 overlapping pairs (its regions come from a
fixed brightness threshold, and a forest canopy is one dark region), and it took 0.1 s a picture
against 0.014 s here; these corner patches found all 82 and no false pair among 64 tiles, and
none among the demo's 640 pictures of flat shapes (where brightness peaks on straight edges had
matched by chance: hence corners, and the share of corners). A crop that is also resized is not
an overlap here (only a copy, when whole).
"""

import hashlib
import itertools
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_retina.files import cache_home, write_json
from keras_retina.ops import images as image_lib

WHOLE_BITS = 3
REDUCE = 2  # every picture is reduced by this factor before its patches are found (the same for all)
KEYPOINTS = 48  # patches per picture, at the strongest corners
PATCH = 12  # a patch's side (reduced pixels), centred on its peak
PEAK_WINDOW = 7  # a corner is the strongest of this window around it
PATCH_BITS = 3
PATCH_MATCHES = 4
OFFSET_TOLERANCE = 1.5
SHARED_PEAKS = 0.3


FLAT = 1.0  # grey levels: a thumbnail whose neighbours differ less than this on average has no shape to hash
CACHE_VERSION = "2"  # fingerprints cached under another version are made again


def dhash(grey, flat=None):
    """64-bit difference hash of a 2-D grey array: 9 x 8 thumbnail, bit = left pixel brighter than its
    neighbour; None for a thumbnail flatter than `flat` (its bits would be noise, and every flat
    picture, a blank sky or a lens cap, would be a copy of every other)."""
    small = np.asarray(Image.fromarray(np.asarray(grey, np.float32)).resize((9, 8), Image.BILINEAR))
    differences = small[:, :-1] - small[:, 1:]
    if flat is not None and np.mean(np.abs(differences)) < flat:
        return None
    return int(np.packbits((differences > 0).flatten()).view(">u8")[0])


def fingerprint(pixels):
    """(exact: bytes, whole: int, patches: [(hash, y, x)], (height, width) reduced) of a uint8 `[H, W, 3]`
    picture (module docstring)."""
    pixels = np.ascontiguousarray(pixels)
    exact = hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).digest()
    grey = np.asarray(Image.fromarray(pixels).convert("L"), np.float32)
    whole = dhash(grey, FLAT)
    height, width = grey.shape
    if min(height, width) // REDUCE < PATCH + PEAK_WINDOW:
        return exact, whole, [], (height // REDUCE, width // REDUCE)
    small = np.asarray(Image.fromarray(grey).resize((width // REDUCE, height // REDUCE), Image.BOX))
    # corners (Shi-Tomasi: the smaller eigenvalue of the local gradient structure), not edges: a patch on a
    # straight edge looks like any other patch on an edge
    gy, gx = np.gradient(small)
    smooth = lambda a: np.lib.stride_tricks.sliding_window_view(a, (5, 5)).mean(axis=(2, 3))  # noqa: E731
    a, b, c = smooth(gx * gx), smooth(gx * gy), smooth(gy * gy)
    corner = np.pad((a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b), 2)
    windows = np.lib.stride_tricks.sliding_window_view(corner, (PEAK_WINDOW, PEAK_WINDOW))
    offset = PEAK_WINDOW // 2
    centre = corner[offset:offset + windows.shape[0], offset:offset + windows.shape[1]]
    strength = np.where(centre >= windows.max(axis=(2, 3)), centre, -np.inf)
    margin = PATCH // 2 + 1  # a patch cut by the picture's edge is not the same patch in a neighbour
    ys, xs = np.nonzero(strength > 1.0)
    keep = ((ys + offset >= margin) & (ys + offset < small.shape[0] - margin)
            & (xs + offset >= margin) & (xs + offset < small.shape[1] - margin))
    ys, xs = ys[keep], xs[keep]
    best = np.argsort(-strength[ys, xs], kind="stable")[:KEYPOINTS]
    patches = []
    for y, x in zip(ys[best] + offset, xs[best] + offset):
        patch = small[y - PATCH // 2:y + PATCH // 2, x - PATCH // 2:x + PATCH // 2]
        patches.append((dhash(patch), int(y), int(x)))
    return exact, whole, patches, small.shape


def _bits(a, b):
    return bin(a ^ b).count("1")


def _chunks(value):
    return [(i, (value >> (16 * i)) & 0xFFFF) for i in range(4)]


class _Groups:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i, j):
        self.parent[self.find(i)] = self.find(j)


def _overlapping(mine, theirs, matched):
    """Whether pictures `mine` and `theirs` (fingerprints) overlap, given their patches `matched`
    ({(my patch, their patch): my position - theirs}): PATCH_MATCHES or more agree on one shift, and
    they are at least SHARED_PEAKS of my corners inside the region the shift makes common (where
    the pictures are one scene, most corners there recur; two pictures that merely share an object
    or a texture share a few)."""
    shifts = np.asarray(list(matched.values()), np.float64)
    close = np.abs(shifts[:, None, :] - shifts[None, :, :]).max(axis=-1) <= OFFSET_TOLERANCE
    agreeing = close.sum(axis=1)
    if agreeing.max() < PATCH_MATCHES:
        return False
    dy, dx = np.median(shifts[close[np.argmax(agreeing)]], axis=0)
    (h, w), (oh, ow) = mine[3], theirs[3]
    margin = PATCH // 2
    inside = [max(0, dy) + margin <= y < min(h, oh + dy) - margin
              and max(0, dx) + margin <= x < min(w, ow + dx) - margin for _, y, x in mine[2]]
    return agreeing.max() >= SHARED_PEAKS * max(sum(inside), 1)


def find_near_duplicates(fingerprints):
    """(groups: [sorted [index]] of two or more, pairs: [(i, j, kind)]) of a list of `fingerprint`s."""
    n = len(fingerprints)
    groups, pairs, seen = _Groups(n), [], set()

    def found(i, j, kind):
        key = (min(i, j), max(i, j))
        if key not in seen:
            seen.add(key)
            pairs.append((*key, kind))
            groups.join(i, j)

    by_exact = {}
    for i, (exact, *_) in enumerate(fingerprints):
        by_exact.setdefault(exact, []).append(i)
    for members in by_exact.values():
        for i, j in itertools.combinations(members, 2):
            found(i, j, "exact")
    by_whole, by_patch = {}, {}
    for i, (_, whole, patches, _) in enumerate(fingerprints):
        for chunk in _chunks(whole) if whole is not None else ():
            for j in by_whole.get(chunk, ()):
                if _bits(whole, fingerprints[j][1]) <= WHOLE_BITS:
                    found(i, j, "copy")
            by_whole.setdefault(chunk, []).append(i)
        shifts = {}  # picture -> {(this patch, its patch)}: their shifts
        for k, (value, y, x) in enumerate(patches):
            for chunk in _chunks(value):
                for j, m in by_patch.get(chunk, ()):
                    other, oy, ox = fingerprints[j][2][m]
                    if j != i and _bits(value, other) <= PATCH_BITS:
                        shifts.setdefault(j, {})[(k, m)] = (y - oy, x - ox)
            for chunk in _chunks(value):
                by_patch.setdefault(chunk, []).append((i, k))
        for j, matched in shifts.items():
            if len(matched) >= PATCH_MATCHES and _overlapping(fingerprints[i], fingerprints[j], matched):
                found(j, i, "overlap")
    members = {}
    for i in range(n):
        members.setdefault(groups.find(i), []).append(i)
    return sorted(sorted(m) for m in members.values() if len(m) > 1), sorted(pairs)


def _picture_names(source):
    """{image_id: a name for people} of a source: a picture source's file names, else the ids."""
    return {int(entry["id"]): entry["file"] for entry in getattr(source, "images", None) or []}


def leakage(sources):
    """{"pictures", "groups": [{"members": [{"split", "picture", "image_id"}], "kinds"}], "across_splits"} of
    {split: source}."""
    keys, prints = [], []
    for split, source in sources.items():
        names = _picture_names(source)
        for example in source.examples():
            image_id = int(example["image_id"])
            keys.append({"split": split, "picture": names.get(image_id, f"image id {image_id}"), "image_id": image_id})
            prints.append(fingerprint(example["image"].numpy()))
    groups, pairs = find_near_duplicates(prints)
    kinds = {}
    for i, j, kind in pairs:
        kinds.setdefault(i, set()).add(kind)
        kinds.setdefault(j, set()).add(kind)
    found = [{"members": [keys[i] for i in group], "kinds": sorted(set().union(*(kinds[i] for i in group)))}
             for group in groups]
    across = [g for g in found if len({m["split"] for m in g["members"]}) > 1]
    return {"pictures": len(keys), "groups": found, "across_splits": len(across)}


def format_leakage(report, shown=5):
    """check-data's lines for `leakage`'s report."""
    groups = report["groups"]
    if not groups:
        return f"[leakage] {report['pictures']} pictures: no copies or overlapping views found."
    lines = [f"[leakage] {report['pictures']} pictures: {len(groups)} group(s) of copies or overlapping views "
             f"({sum(len(g['members']) for g in groups)} pictures), {report['across_splits']} across splits."]
    for group in sorted(groups, key=lambda g: -len({m["split"] for m in g["members"]}))[:shown]:
        splits = sorted({m["split"] for m in group["members"]})
        names = ", ".join(f"{m['split']}:{m['picture']}" for m in group["members"][:6])
        more = f" and {len(group['members']) - 6} more" if len(group["members"]) > 6 else ""
        prefix = "WARNING: " if len(splits) > 1 else "  "
        lines.append(f"{prefix}{' / '.join(group['kinds'])}: {names}{more}"
                     + (" -- in both training and validation: the validation metrics overstate the model"
                        if len(splits) > 1 else ""))
    if len(groups) > shown:
        lines.append(f"  ... {len(groups) - shown} more group(s) (--output lists them all)")
    return "\n".join(lines)


def _to_json(found):
    exact, whole, patches, shape = found
    return [exact.hex(), None if whole is None else str(whole), [[str(h), y, x] for h, y, x in patches], list(shape)]


def _from_json(row):
    exact, whole, patches, shape = row
    return (bytes.fromhex(exact), None if whole is None else int(whole), [(int(h), y, x) for h, y, x in patches],
            tuple(shape))


def file_fingerprints(paths):
    """[fingerprint] of picture files (module docstring), from the cache where a file is unchanged."""
    out, by_folder = [None] * len(paths), {}
    for i, path in enumerate(paths):
        by_folder.setdefault(os.path.dirname(os.path.abspath(path)), []).append(i)
    for folder, indices in by_folder.items():
        cache = os.path.join(cache_home(), "fingerprints", hashlib.sha1(folder.encode("utf-8", "surrogateescape"))
                             .hexdigest() + ".json")
        try:
            with open(cache, encoding="utf-8") as f:  # our own cache file
                known = json.load(f)
        except (OSError, ValueError):
            known = {}
        before = len(known)
        known = {key: value for key, value in known.items() if key.startswith(f"{CACHE_VERSION}|")}
        changed = len(known) != before
        for i in indices:
            stat = os.stat(paths[i])
            key = f"{CACHE_VERSION}|{os.path.basename(paths[i])}|{stat.st_size}|{stat.st_mtime_ns}"
            if key in known:
                out[i] = _from_json(known[key])
                continue
            try:
                out[i] = fingerprint(image_lib.read_picture(paths[i]).numpy())
            except (image_lib.BadImage, tf.errors.InvalidArgumentError, OSError):
                # read window by window (a tiled TIFF) or not decodable (the dirty-data pass names it): its own scene
                out[i] = (hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest(), None, [], (0, 0))
            known[key] = _to_json(out[i])
            changed = True
        if changed:
            try:
                write_json(known, cache, indent=None)
            except OSError:  # a read-only cache: fingerprints again next time
                pass
    return out


def scene_groups(paths):
    """[[index]] of `paths` that are copies or overlapping views of one scene (two or more each)."""
    return find_near_duplicates(file_fingerprints(paths))[0]


CHECK_AT_START = 600  # pictures: a training start checks its splits for shared scenes up to this many (~10 s)


def split_warning(train, val):
    """At a training start: a WARNING line when picture sources `train` and `val` share scenes (their
    fingerprints cached: a later start decodes nothing), "" when they do not or cannot be checked
    here (another kind of source, or more than CHECK_AT_START pictures: check-data checks those)."""
    pictures = [getattr(source, "images", None) for source in (train, val)]
    if None in pictures or sum(map(len, pictures)) > CHECK_AT_START:
        return ""
    files = [entry["file"] for entry in pictures[0]] + [entry["file"] for entry in pictures[1]]
    crossing = [g for g in scene_groups(files) if min(g) < len(pictures[0]) <= max(g)]
    if not crossing:
        return ""
    shown = ", ".join(os.path.basename(files[i]) for i in crossing[0][:4])
    return (f"WARNING: training and validation share {len(crossing)} scene(s) (copies or overlapping views, e.g. "
            f"{shown}): the validation metrics overstate the model; keras_retina check-data lists them.")
