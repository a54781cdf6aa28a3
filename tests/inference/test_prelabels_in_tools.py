"""The pre-label files for CVAT and Label Studio pass those tools' own readers, offline: datumaro's
CVAT importer reads our boxes back, and label-studio-sdk's LabelInterface validates our predictions
against a labelling config (and refuses a label or a from_name the config does not have).

The tools run in their own virtual environment (their dependencies are not keras_retina's): its
python is $KERAS_RETINA_LABELLING_TOOLS_PYTHON, which `.ci/run` makes (pip install datumaro
label-studio-sdk); there this test never skips."""

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from keras_retina.inference.prelabels import Picture, PrelabelSettings, write_prelabels

TOOLS = os.environ.get("KERAS_RETINA_LABELLING_TOOLS_PYTHON")
LABEL_MAP = [{"id": 3, "name": "tree"}, {"id": 8, "name": "car"}]
CHECK = r'''
import json, sys
import datumaro as dm
from label_studio_sdk.label_interface import LabelInterface
folder = sys.argv[1]
dataset = dm.Dataset.import_from(folder + "/cvat", "cvat")
names = dataset.categories()[dm.AnnotationType.label]
cvat = {item.id: [[names[a.label].name, *a.get_bbox()] for a in item.annotations] for item in dataset}
config = ('<View><Image name="photo" value="$photo"/><RectangleLabels name="box" toName="photo">'
          '<Label value="tree"/><Label value="car"/></RectangleLabels></View>')
interface = LabelInterface(config)
tasks = json.load(open(folder + "/prelabels_labelstudio.json"))
valid = [interface.validate_prediction(p) for t in tasks for p in t["predictions"]]
wrong = json.loads(json.dumps(tasks[0]["predictions"][0]))
wrong["result"][0]["value"]["rectanglelabels"] = ["bus"]
print(json.dumps({"cvat": cvat, "valid": valid, "wrong_label_valid": interface.validate_prediction(wrong)}))
'''


@pytest.mark.skipif(not TOOLS and os.environ.get("CI") != "true",
                    reason="no labelling tools' environment ($KERAS_RETINA_LABELLING_TOOLS_PYTHON)")
def test_cvat_and_label_studio_files_pass_the_tools_own_readers(tmp_path):
    assert TOOLS, "CI makes the labelling tools' environment: $KERAS_RETINA_LABELLING_TOOLS_PYTHON is unset"
    (tmp_path / "cvat" / "images").mkdir(parents=True)  # datumaro finds a CVAT task's pictures in images/
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "cvat" / "images" / "a.png")
    Image.fromarray(np.zeros((50, 40, 3), np.uint8)).save(tmp_path / "cvat" / "images" / "b.jpg")
    found = [Picture("photos/a.png", 60, 80, np.array([[5.2, 10.4, 30.6, 50.1], [0.0, 0.0, 20.0, 8.0]]),
                     np.array([0.9, 0.4]), np.array([3, 8])),
             Picture("photos/b.jpg", 50, 40, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]
    write_prelabels(PrelabelSettings(format="cvat"), found, LABEL_MAP, str(tmp_path / "cvat"))
    write_prelabels(PrelabelSettings(format="labelstudio", labelstudio_from_name="box", labelstudio_to_name="photo"),
                    found, LABEL_MAP, str(tmp_path))
    result = subprocess.run([TOOLS, "-c", CHECK, str(tmp_path)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["cvat"].keys() == {"a", "b"} and answer["cvat"]["b"] == []
    got = answer["cvat"]["a"]  # datumaro's boxes: x, y, width, height
    assert [g[0] for g in got] == ["tree", "car"]
    np.testing.assert_allclose([g[1:] for g in got], [[10.4, 5.2, 39.7, 25.4], [0.0, 0.0, 8.0, 20.0]], atol=0.006)
    assert answer["valid"] == [True, True] and answer["wrong_label_valid"] is False
