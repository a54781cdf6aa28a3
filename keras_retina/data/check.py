"""`keras_retina check-data` as a function: every problem in the data, and how well anchors cover it.

`check_data(data_config, model_config, max_images, write_coco=None, output=None)` reads every
example of the training and validation sources (every image decoded), prints each split's
classes, its counts (pictures, boxes, per class, per picture, sizes: `label_statistics`), the
labels that look wrong (boxes on one object twice, sizes and shapes far from their class's:
`label_checks`), its
dirty-data report (what training does with each problem, with and without --skip_bad_examples)
and the anchor coverage of its boxes at the model's scale (`coverage`); with `write_coco`, writes
the training split as that COCO JSON file and the validation split beside it (`-val` before the
suffix: `data.coco_writer`); with `output`, the counts, problems and coverage of each split as a
JSON file for scripts. Last, copies and overlapping views of one scene within and across the
splits (`near_duplicates.leakage`), a warning when a group spans training and validation.
`keep` (a dict) receives the sources read ("sources": {split: source}) and the numbers
("document"), for the data report. Returns the number of problems.
"""

import dataclasses
import os

from keras_retina.data import cleaning, coverage
from keras_retina.data.coco_writer import write_coco_json
from keras_retina.data.data_config import DataConfig
from keras_retina.data.label_checks import format_label_checks, label_checks
from keras_retina.data.label_statistics import format_statistics, label_statistics
from keras_retina.data.near_duplicates import format_leakage, leakage
from keras_retina.data.splits import open_sources
from keras_retina.files import write_json
from keras_retina.modeling.builder import anchor_generator
from keras_retina.modeling.model_config import ModelConfig


def check_data(data_config: DataConfig, model_config: ModelConfig, max_images: int = 1000,
               write_coco: str | None = None, output: str | None = None, *, keep: dict | None = None) -> int:
    # Count everything rather than stop at the first bad image; say at the end what training does.
    sources = open_sources(dataclasses.replace(data_config, skip_bad_examples=True), need_train=False,
                           load_train=True, verify_images=True)
    label_map = sources.label_map
    problems = 0
    anchors = anchor_generator(model_config)
    document = {"classes": [e["name"] for e in label_map], "splits": {}}
    for split, source in (("train", sources.train), ("val", sources.val)):
        if source is None:
            continue
        print(f"[{split}] {len(label_map)} classes: {', '.join(e['name'] for e in label_map[:20])}"
              + (" ..." if len(label_map) > 20 else ""))
        count = source.num_examples if source.decoded else cleaning.count_examples(source.examples())
        print(f"[{split}] read and decoded {count} images")
        stats = label_statistics(source)
        print(format_statistics(split, stats))
        checks = label_checks(source)
        print(format_label_checks(split, checks))
        print(source.report.format(skipping=data_config.skip_bad_examples))
        problems += len(source.report.problems())
        report = coverage.anchor_coverage(source, model_config.resize_policy, anchors, max_images=max_images)
        print(coverage.format_coverage(report))
        document["splits"][split] = {"source": source.name, **stats, "label_checks": checks,
                                     "problems": len(source.report.problems()), "anchor_coverage": report}
        if write_coco:
            stem, suffix = os.path.splitext(write_coco)
            path = write_coco if split == "train" else f"{stem}-val{suffix or '.json'}"
            folder = write_coco_json(source, path)
            print(f"[{split}] written as COCO JSON to {path}; its pictures: {folder} (give it as --{split}_images)")
    splits = {split: source for split, source in (("train", sources.train), ("val", sources.val)) if source}
    document["leakage"] = leakage(splits)
    print(format_leakage(document["leakage"]))
    if problems and not data_config.skip_bad_examples:
        print("Training on this data stops with an error listing the problems above; fix them or "
              "pass --skip_bad_examples.")
    if keep is not None:  # what the data report draws (`evaluation.data_report`)
        keep.update(sources=splits, document={**document, "problems": problems})
    if output:
        write_json({**document, "problems": problems}, output)
        print(f"Counts, problems and anchor coverage written to {output}")
    return problems
