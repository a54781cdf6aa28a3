"""`keras_retina check-data`: every problem in the data, what training does with it, anchor coverage."""

from keras_retina.data.check import check_data


def run(configs, options, args):
    check_data(configs["data"], configs["model"], options["max_images"], options["write_coco"], options["output"])
    return 0
