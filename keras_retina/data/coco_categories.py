"""The 80 COCO object categories (id and name, as in the COCO 2017 annotations) and the names
other datasets give some of them.

`LABEL_MAP` is the label map of a model converted from COCO weights (`pretrained.convert`): index = our
contiguous class 0..79, in id order, which is detectron2's class order; torchvision's
detectors index their 91 logits by the id itself (0 and the 10 ids COCO never used are
placeholders). `ALIASES` maps other datasets' names (Pascal VOC's, mostly) to COCO's, for
carrying classifier rows over by name (`training.fine_tuning`).
"""

_NAMES = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}
LABEL_MAP = [{"id": i, "name": name} for i, name in sorted(_NAMES.items())]
CATEGORY_IDS = tuple(sorted(_NAMES))  # class k of a converted model has category id CATEGORY_IDS[k]
TORCHVISION_LOGITS = 91  # torchvision's COCO detectors: logit index = category id

# other name -> COCO name (compared lower-case, spaces and underscores alike)
ALIASES = {
    "aeroplane": "airplane", "plane": "airplane", "motorbike": "motorcycle", "bike": "bicycle",
    "sofa": "couch", "tvmonitor": "tv", "tv monitor": "tv", "television": "tv",
    "diningtable": "dining table", "pottedplant": "potted plant",
    "cellphone": "cell phone", "mobile phone": "cell phone", "phone": "cell phone", "ball": "sports ball",
    "pedestrian": "person", "people": "person", "hair dryer": "hair drier", "fridge": "refrigerator",
    "doughnut": "donut", "hydrant": "fire hydrant", "racket": "tennis racket",
}


def canonical(name):
    """A class name as compared across datasets: lower case, '_' and '-' as spaces, single
    spaces, then `ALIASES`."""
    text = " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())
    return ALIASES.get(text, ALIASES.get(text.replace(" ", ""), text))
