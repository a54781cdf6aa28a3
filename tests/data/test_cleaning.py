"""The dirty-data pass (`keras_retina.data.cleaning`): reports, box verdicts, record scans."""

import numpy as np
import pytest

from keras_retina.data import cleaning
from keras_retina.data.readers import tfrecord
from keras_retina.errors import DataError

from dirty_data import DIRTY_RECORDS_COUNTS, dirty_records, write_tfrecord


def test_report_boxes_counts_every_verdict_once():
    report = cleaning.DataReport("one image")
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [np.nan, 0.1, 0.5, 0.5], [0.5, 0.5, 0.5, 0.9],
                      [1.2, 0.1, 1.5, 0.5], [-0.1, 0.2, 0.6, 0.7], [0.6, 0.1, 0.5, 0.5]], np.float32)
    cleaning.report_boxes("img 7", boxes, np.array([0, 0, 0, 0, 3, 0]), np.array([False] * 5 + [True]),
                          num_classes=2, report=report, category_ids=np.array([1, 1, 1, 1, 42, 1]))
    assert dict(report.counts) == {"bad_box": 2, "empty_box": 1, "outside_box": 1, "clipped_box": 1,
                                   "unknown_category": 1, "crowd": 1}
    assert report.offenders["unknown_category"] == ["img 7: category 42"]
    assert report.offenders["outside_box"] == ["img 7: box [1.2, 0.1, 1.5, 0.5]"]
    empty = cleaning.DataReport("negative")
    cleaning.report_boxes("img 8", np.zeros((0, 4), np.float32), [], [], 2, empty)
    assert dict(empty.counts) == {"negative_image": 1} and not empty.problems()


def test_scan_records_names_each_record(tmp_path):
    path = str(tmp_path / "dirty.tfrecord")
    write_tfrecord(path, dirty_records())
    report = cleaning.DataReport("dirty.tfrecord")
    records = tfrecord.tfrecord_source(path, [{"id": 1, "name": "a"}]).annotation_records()
    count, excluded = cleaning.scan_records(records, report, 1, decode=True)
    assert count == 7 and excluded == [f"{path} record {n} (source_id 6)" for n in (5, 6)] + [
        f"{path} record 1 (source_id 2)"]
    assert dict(report.counts) == DIRTY_RECORDS_COUNTS
    assert report.offenders["unreadable_image"] == [f"{path} record 1 (source_id 2)"]
    assert report.offenders["bad_box"][0] == f"{path} record 0 (source_id 1): box [nan, 0.1, 0.5, 0.5]"
    assert report.offenders["unknown_category"] == [f"{path} record 2 (source_id 3): category 7"]
    report = cleaning.DataReport("without decoding")
    cleaning.scan_records(records, report, 1)
    assert "unreadable_image" not in report.counts and report.counts["duplicate_image_id"] == 2


def test_report_format_says_what_training_does():
    report = cleaning.DataReport("x.json")
    report.add("missing_file", "a.jpg: no such file")
    report.add("clipped_box", "annotation id 3")
    text = report.format(skipping=False)
    assert "ERROR" in text and "a.jpg" in text and "ok" in text
    assert "skipped" in report.format(skipping=True)
    with pytest.raises(DataError, match="--skip_bad_examples"):
        report.raise_if_bad(skipping=False)
    report.raise_if_bad(skipping=True)  # skipping: no error
