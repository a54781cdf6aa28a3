"""Label maps: the dataset's category ids and names, index = contiguous class 0..K-1.

`read_label_map(path)` reads a JSON list `[{"id", "name"}]` or a TF Object Detection API
`.pbtxt` (`item { id: 1 name: "/m/01g317" display_name: "person" }`, parsed by protobuf's own
text-format parser; `display_name` wins over `name`; other fields are ignored);
`read_class_names(path)` a classes file (`name,id` lines, or a name per line). Every label map,
read or scanned, is checked (`check_label_map`): ids unique integers in 0..2^24-1 (the exported
model returns them as float32, as the TF OD API does).
"""

import collections
import json

import tensorflow as tf

from keras_retina.errors import DataError

MAX_CATEGORY_ID = 2**24  # exactly representable in float32 detection_classes


def read_label_map(path):
    """A label map file -> [{"id", "name"}] sorted by id; DataError naming the file and the problem."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"--label_map={path}: no such file.")
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            text = f.read().decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not UTF-8 text ({error}).") from None
    if path.endswith(".json"):
        try:
            entries = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise DataError(f"{path}: not valid JSON ({str(error)[:200]})") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
            raise DataError(f"{path}: not a list of {{\"id\", \"name\"}} objects.")
    else:
        entries = _parse_pbtxt(path, text)
    if not entries:
        raise DataError(f"{path}: no label map entries found.")
    label_map = [{"id": e["id"], "name": str(e.get("name", e["id"]))} for e in entries]
    check_label_map(label_map, path)
    return sorted(label_map, key=lambda e: e["id"])


def read_class_names(path):
    """A classes file -> label map: fizyr's `name,id` lines, or one name per line (ids 1..K);
    DataError naming the file and line of a malformed one."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"--classes={path}: no such file.")
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            lines = [line.strip() for line in f.read().decode("utf-8").splitlines()]
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not UTF-8 text ({error}).") from None
    label_map = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        name, _, index = line.rpartition(",") if "," in line else (line, "", str(len(label_map) + 1))
        try:
            label_map.append({"id": int(index), "name": name.strip()})
        except ValueError:
            raise DataError(f"{path} line {number}: {line[:80]!r} is not 'name,id' or a name.") from None
    if not label_map:
        raise DataError(f"{path}: no classes in it.")
    check_label_map(label_map, path)
    names = [e["name"] for e in label_map]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: class names {repeated[:5]} appear more than once.")
    return sorted(label_map, key=lambda e: e["id"])


def check_label_map(label_map, where):
    """DataError unless every id is a distinct integer in 0..MAX_CATEGORY_ID - 1."""
    ids = [e["id"] for e in label_map]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        wrong = [i for i in ids if not isinstance(i, int)][:5]
        raise DataError(f"{where}: label map ids must be integers, got {wrong}.")
    repeated = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    if repeated:
        raise DataError(f"{where}: label map ids {repeated} appear more than once.")
    outside = [i for i in ids if not 0 <= i < MAX_CATEGORY_ID]
    if outside:
        raise DataError(f"{where}: label map ids must be in 0..{MAX_CATEGORY_ID - 1} (the exported model returns "
                        f"them as float32); got {outside[:5]}.")


def _parse_pbtxt(path, text):
    from google.protobuf import text_format

    message = _label_map_class()()
    try:
        text_format.Parse(text, message, allow_unknown_field=True)
    except text_format.ParseError as error:
        raise DataError(f"{path}: not a TF OD API label map ({error}).") from None
    entries = []
    for item in message.item:
        if not item.HasField("id"):
            raise DataError(f"{path}: an item has no id: {text_format.MessageToString(item, as_one_line=True)}")
        entries.append({"id": item.id, "name": item.display_name or item.name or str(item.id)})
    return entries


def _label_map_class():
    """The TF OD API's StringIntLabelMap message (the fields we read), built from a descriptor."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="keras_retina/label_map.proto", package="keras_retina",
                                               syntax="proto2")
    item = proto.message_type.add(name="StringIntLabelMapItem")
    for number, (name, kind) in enumerate((("name", field.TYPE_STRING), ("id", field.TYPE_INT64),
                                           ("display_name", field.TYPE_STRING)), start=1):
        item.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
    proto.message_type.add(name="StringIntLabelMap").field.add(
        name="item", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
        type_name=".keras_retina.StringIntLabelMapItem")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("keras_retina.StringIntLabelMap"))
