"""TFRecords in the TF Object Detection API / Model Garden layout -> a data source.

Features read (tf.train.Example): `image/encoded`, `image/source_id`,
`image/object/bbox/{ymin,xmin,ymax,xmax}` (normalised to [0, 1]), `image/object/class/label`
(the dataset's category ids), optional `image/object/is_crowd` and `image/object/area`.

`tfrecord_source(pattern, label_map=None, use_official=False)` -> a `record_source.RecordSource`:
records in file order, images still encoded, named by file and record number. Its examples are in
the common format (`data.source`): boxes yxyx in pixels of the decoded image, classes 0..K-1
through the label map (-1 when not in it). A numeric `source_id` becomes the image id; any other
string is hashed; a missing one is a hash of the image bytes, as in the Model Garden.
`example_decoder(use_official)`: our parser (the default) or the Model Garden's `TfExampleDecoder`.
`feature(values, kind)`: a tf.train.Feature of "bytes", "float" or "int" values, for writing records.
DataError: no file matches `pattern`, or a record cannot be read while scanning the label map.
"""

import tensorflow as tf

from keras_retina.data.label_map import check_label_map
from keras_retina.data.readers.record_source import RecordSource
from keras_retina.errors import DataError
from keras_retina.ops import boxes as box_lib
from keras_retina.ops.images import decode_image

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/source_id": tf.io.FixedLenFeature((), tf.string, ""),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/area": tf.io.VarLenFeature(tf.float32),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
}


def feature(values, kind):
    """A tf.train.Feature of `values` of `kind` "bytes", "float" or "int" (module docstring)."""
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    raise ValueError(f"feature kind {kind!r}: bytes, float or int")


def _parse(serialized):
    """A record's features, dense; an empty source_id replaced by a hash of the image bytes
    (as the Model Garden's decoder does); crowd flags bool (all False when absent)."""
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
             for k, v in parsed.items()}
    source_id = dense["image/source_id"]
    dense["image/source_id"] = tf.cond(
        tf.strings.length(source_id) > 0, lambda: source_id,
        lambda: tf.strings.as_string(tf.strings.to_hash_bucket_fast(dense["image/encoded"], 2**63 - 1)))
    lengths = tf.stack([tf.size(dense[f"image/object/{key}"]) for key in (
        "bbox/ymin", "bbox/xmin", "bbox/ymax", "bbox/xmax", "class/label")])
    with tf.control_dependencies([tf.debugging.assert_equal(
            lengths, lengths[:1], message="the record's object lists (bbox/ymin, bbox/xmin, bbox/ymax, bbox/xmax, "
            "class/label) differ in length")]):
        dense["image/object/class/label"] = tf.identity(dense["image/object/class/label"])
    classes, crowd = dense["image/object/class/label"], dense["image/object/is_crowd"]
    dense["image/object/is_crowd"] = tf.cond(tf.size(crowd) > 0, lambda: crowd > 0,
                                             lambda: tf.zeros_like(classes, tf.bool))
    dense["boxes"] = tf.stack([dense[f"image/object/bbox/{c}"] for c in ("ymin", "xmin", "ymax", "xmax")], -1)
    return dense


def _own_decoder(serialized):
    dense = _parse(serialized)
    image = decode_image(dense["image/encoded"])
    classes = dense["image/object/class/label"]
    boxes = dense["boxes"]
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    pixel_boxes = box_lib.denormalise(boxes, size[0], size[1])
    area = tf.cond(tf.size(dense["image/object/area"]) > 0, lambda: dense["image/object/area"],
                   lambda: box_lib.area(pixel_boxes))
    return {"source_id": dense["image/source_id"], "image": image, "groundtruth_boxes": boxes,
            "groundtruth_classes": classes, "groundtruth_is_crowd": dense["image/object/is_crowd"],
            "groundtruth_area": area}


def example_decoder(use_official=False):
    """Ours, or with `use_official` the Model Garden's TfExampleDecoder.decode when installed."""
    if use_official:
        try:
            from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder
        except ImportError:
            pass
        else:
            return TfExampleDecoder().decode
    # Ours by default: it decodes exactly as the dirty-data pass checks (the official one returns
    # an animated GIF as 4-D, which cannot be told apart).
    return _own_decoder


def _image_id(source_id):
    numeric = tf.strings.regex_full_match(source_id, "[0-9]{1,18}")
    return tf.cond(numeric, lambda: tf.strings.to_number(source_id, tf.int64),
                   lambda: tf.strings.to_hash_bucket_fast(source_id, 2**62))


def scan_label_map(pattern):
    """Distinct class ids in the files -> label map [{"id", "name"}] (names are the ids)."""
    files = _files(pattern)
    ids = set()
    spec = {"image/object/class/label": tf.io.VarLenFeature(tf.int64)}
    try:
        for labels in tf.data.TFRecordDataset(files).map(
                lambda s: tf.io.parse_single_example(s, spec)["image/object/class/label"].values):
            ids.update(labels.numpy().tolist())
    except tf.errors.OpError as error:  # not a tf.Example, a cut file
        reason = (error.message or str(error)).strip().splitlines()[0]
        raise DataError(f"{pattern}: a record cannot be read ({reason}). Rewrite or remove the file.") from None
    label_map = [{"id": int(i), "name": str(i)} for i in sorted(ids)]
    check_label_map(label_map, pattern)
    return label_map


def _files(pattern):
    files = sorted(tf.io.gfile.glob(pattern))  # a fixed order: --deterministic depends on it
    if not files:
        raise DataError(f"no TFRecord files match {pattern}")
    return files


def _class_table(label_map):
    """Dataset category id -> 0..K-1, -1 for ids not in the label map."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant([e["id"] for e in label_map], tf.int64),
            tf.range(len(label_map), dtype=tf.int32)), default_value=-1)


def tfrecord_source(pattern, label_map=None, use_official=False):
    """Files matching `pattern` -> an unchecked `record_source.RecordSource` (records named
    "<file> record <n> (source_id <id>)"); `label_map` None scans the files' class ids.

    Objects whose category id is not in the label map get class -1, never trained on. The
    source's `checked()` pass counts them and every other bad box or image."""
    label_map = scan_label_map(pattern) if label_map is None else label_map
    files = tf.data.Dataset.from_tensor_slices(_files(pattern))
    decode = example_decoder(use_official)
    table = _class_table(label_map)

    def convert(serialized):
        decoded = decode(serialized)
        image = decoded["image"]
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        return {
            "image_id": _image_id(decoded["source_id"]),
            "image": image,
            "boxes": box_lib.denormalise(tf.reshape(decoded["groundtruth_boxes"], [-1, 4]), size[0], size[1]),
            "classes": table.lookup(tf.cast(decoded["groundtruth_classes"], tf.int64)),
            "is_crowd": tf.cast(decoded["groundtruth_is_crowd"], tf.bool),
            "area": tf.cast(decoded["groundtruth_area"], tf.float32),
        }

    def annotations(serialized):
        dense = _parse(serialized)
        classes = dense["image/object/class/label"]
        return {"image_id": _image_id(dense["image/source_id"]), "boxes": dense["boxes"],
                "classes": table.lookup(classes), "category_ids": classes,
                "is_crowd": dense["image/object/is_crowd"], "encoded": dense["image/encoded"]}

    def name(path, index, serialized):
        source_id = tf.io.parse_single_example(serialized, {"image/source_id": _FEATURES["image/source_id"]})
        source_id = source_id["image/source_id"]
        shown = tf.where(source_id == "", "no source_id", tf.strings.join(["source_id ", source_id]))
        return tf.strings.join([path, " record ", tf.strings.as_string(index), " (", shown, ")"]), serialized

    records = files.flat_map(lambda path: tf.data.TFRecordDataset(path).enumerate().map(
        lambda index, serialized: name(path, index, serialized)))
    return RecordSource(pattern, label_map, records, convert, annotations)
