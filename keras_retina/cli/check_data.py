"""`keras_retina check-data`: every problem in the data, what training does with it, anchor coverage; with
--report, the data report page."""

from keras_retina.data.check import check_data


def run(configs, options, args):
    keep = {} if options["report_dir"] else None
    check_data(configs["data"], configs["model"], options["max_images"], options["write_coco"], options["output"],
               keep=keep)
    if keep is not None:
        from keras_retina.evaluation.data_report import write_data_report
        from keras_retina.modeling.builder import anchor_generator

        path = write_data_report(options["report_dir"], keep["sources"], keep["document"],
                                 configs["model"].resize_policy, anchor_generator(configs["model"]))
        print(f"Data report: {path}")
    return 0
