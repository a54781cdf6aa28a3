"""The pictures an int8 LiteRT file is calibrated on, letterboxed as the file will see pictures.

`calibration_inputs(run, config, input_size, policy, folder=None, count=200)`: the first `count`
readable pictures (by name) of `folder`, else `count` pictures of the model_dir's training data
(its validation data when it has none) in a fixed shuffled order; unreadable pictures in a
folder are named on stderr and skipped. Returns uint8 `[H, W, 3]` arrays; DataError when there
are none.
"""

import os
import sys

import tensorflow as tf

from keras_retina.config_fields import from_dict
from keras_retina.data.data_config import DataConfig, saved_data_settings
from keras_retina.data.splits import open_sources
from keras_retina.errors import DataError, UsageError
from keras_retina.modeling.transform import letterbox
from keras_retina.ops import images as image_lib


def calibration_inputs(run, config, input_size, policy, folder=None, count=200):
    pictures = []
    if folder:
        try:
            names = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in image_lib.EXTENSIONS)
        except OSError as error:
            raise DataError(f"--calibration_images={folder}: cannot list it ({error.strerror or error}).") from None
        skipped = 0
        for name in names[:count * 2]:
            if len(pictures) == count:
                break
            try:
                pictures.append(image_lib.read_picture(os.path.join(folder, name)).numpy())
            except (image_lib.BadImage, tf.errors.InvalidArgumentError) as error:
                print(f"{os.path.join(folder, name)}: cannot read this image ({str(error).splitlines()[0][:120]}); "
                      f"not used for calibration.", file=sys.stderr)
                skipped += 1
        source_name = f"{folder} ({skipped} unreadable skipped)" if skipped else folder
    else:
        data = from_dict(DataConfig, saved_data_settings(config["data"]), run.config_path)
        try:  # no dirty-data pass over the whole split: a few hundred pictures are read
            sources = open_sources(data, need_train=False, load_train=True, verify_images=False)
        except UsageError as error:
            raise UsageError(f"{error} (int8 calibration reads the model_dir's data; give --calibration_images=FOLDER "
                             f"for a model without any)") from None
        source = sources.train or sources.val
        for example in source.examples(shuffle=True, seed=0).take(count):
            pictures.append(example["image"].numpy())
        source_name = source.name
    if not pictures:
        raise DataError(f"no pictures to calibrate int8 on in {source_name}; give --calibration_images=FOLDER.")
    print(f"Calibrating int8 on {len(pictures)} pictures of {source_name}", flush=True)
    return [letterbox(p, input_size, policy)[0] for p in pictures]
