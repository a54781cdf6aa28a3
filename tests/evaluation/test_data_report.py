"""The data report (`check-data --report_dir`): every part drawn on a small dataset with a box
labelled twice and a training picture copied into validation, user text escaped, nothing fetched
from the network, and the page shown by a real browser."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from keras_retina.data import synthetic
from keras_retina.data.check import check_data
from keras_retina.data.data_config import DataConfig
from keras_retina.evaluation.data_report import write_data_report
from keras_retina.modeling.builder import anchor_generator
from keras_retina.modeling.model_config import ModelConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("Classes", "Box sizes", "Box shapes", "Boxes per picture", "Samples of each class", "Labels to look at",
            "Copies and overlapping views", "The pictures with the most boxes and with the smallest")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    paths = synthetic.write_coco_dataset(str(root / "shapes"), num_train=16, num_val=4, num_classes=2,
                                         sizes=((96, 128),), max_objects=3)
    train = json.loads(open(paths["train"][0]).read())
    val = json.loads(open(paths["val"][0]).read())
    train["categories"][0]["name"] = "<b>square</b>"  # a name with markup: shown as text
    val["categories"][0]["name"] = "<b>square</b>"
    twice = dict(train["annotations"][0], id=10_000)  # one object labelled twice
    twice["bbox"] = [v + 1 for v in twice["bbox"][:2]] + twice["bbox"][2:]
    train["annotations"].append(twice)
    copied = train["images"][3]  # a training picture copied into validation under another name
    shutil.copy(os.path.join(paths["train"][1], copied["file_name"]), os.path.join(paths["val"][1], "copy.jpg"))
    val["images"].append(dict(copied, id=999, file_name="copy.jpg"))
    val["annotations"] += [dict(a, id=20_000 + k, image_id=999) for k, a in enumerate(train["annotations"])
                           if a["image_id"] == copied["id"]]
    for split, document in (("train", train), ("val", val)):
        with open(paths[split][0], "w") as f:
            json.dump(document, f)
    config = ModelConfig(num_classes=2, backbone="tiny", image_size=96)
    keep = {}
    check_data(DataConfig(train_annotations=paths["train"][0], train_images=paths["train"][1],
                          val_annotations=paths["val"][0], val_images=paths["val"][1]), config, keep=keep)
    path = write_data_report(str(root / "report"), keep["sources"], keep["document"], config.resize_policy,
                             anchor_generator(config))
    return path, keep["document"]


def test_every_part_is_drawn_with_what_was_placed(report):
    path, document = report
    page = open(path, encoding="utf-8").read()
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page, section
    assert document["splits"]["train"]["label_checks"]["counts"]["duplicates"] == 1
    assert document["leakage"]["across_splits"] == 1
    assert "duplicate &lt;b&gt;square&lt;/b&gt;" in page and "<b>square</b>" not in page  # escaped
    assert "val copy.jpg" in page and "(exact)" in page  # the copy, in its group
    assert "http://" not in page and "https://" not in page  # nothing fetched
    figures = page.count("data:image/png;base64,")
    thumbnails = page.count("data:image/jpeg;base64,")
    assert figures == 4 and thumbnails == 2 * 4 + 1 + 2 + 8  # samples, the duplicate, the copy's group, extremes


@pytest.mark.skipif(not CHROMIUM and os.environ.get("CI") != "true", reason="headless Chromium is not installed")
def test_the_page_shows_in_a_real_browser(report, tmp_path):
    path, _ = report
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", f"file://{path}"], capture_output=True, text=True,
                         timeout=120)
    assert 'data-images-shown="23/23"' in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,3000", f"--screenshot={shot}", f"file://{path}"],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # figures and pictures, not a blank page
