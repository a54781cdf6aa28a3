"""keras-retina: RetinaNet ("Focal Loss for Dense Object Detection") as Keras 3 layers on TensorFlow."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "keras_retina" / "version.py").read_text()).group(1)

# tf-models-official 2.20 (the reference implementation the tests compare against)
# requires tensorflow~=2.20.0, so that is the TensorFlow we support and test.
INSTALL_REQUIRES = [
    "tensorflow~=2.20.0",
    "keras>=3.10,<4",
    "tensorflow-datasets>=4.9,<5",
    "pycocotools>=2.0.7,<3",
    "absl-py>=2.0,<3",
    "numpy>=1.26,<3",
    "pillow>=10.1",
    "defusedxml>=0.7,<1",  # Pascal VOC XML: no entity expansion, nothing external fetched
    "pyyaml>=6,<7",  # Ultralytics data.yaml, through its safe loader
    "matplotlib>=3.8",  # the evaluation report's figures
    "av>=14",  # predict on videos: FFmpeg's decoders and encoders (PyAV's wheels bundle FFmpeg)
    "tifffile>=2024.1",  # large pictures (tiled TIFFs) read window by window
    "imagecodecs>=2024.1",  # the TIFF compressions orthophotos use (LZW, JPEG, ZSTD ...)
]
OFFICIAL = ["tf-models-official~=2.20.0"]
SERVING = ["tensorflow-serving-api~=2.20.0"]  # export/client.py over gRPC
LITERT = ["ai-edge-litert>=2.3,<3"]  # runs .tflite files (predict/evaluate --model); TensorFlow converts them
ONNX = ["tf2onnx>=1.17,<2", "onnx>=1.17", "onnxruntime>=1.20"]  # export --format=onnx, runs .onnx files
# detect-batch and write-records (keras_retina/batch): Beam pins protobuf < 7, pillow < 13, pyarrow < 26 and
# numpy < 2.5, so it is an environment of its own, never in "test" (docs/scale.md).
BEAM = ["apache-beam>=2.77,<3"]

setup(
    name="keras-retina",
    version=VERSION,
    description=__doc__,
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_retina", "keras_retina.*"]),
    package_data={"keras_retina.pretrained": ["registry.json"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "official": OFFICIAL,
        "serving": SERVING,
        "litert": LITERT,
        "onnx": ONNX,
        "beam": BEAM,
        "test": ["pytest>=8", "pytest-xdist>=3.5"] + OFFICIAL + SERVING + LITERT + ONNX,
        "bench": ["keras-hub>=0.32,<0.33"] + OFFICIAL,
        # differential tests: files torch.save wrote (weight_files), torchvision RetinaNets next to converted
        # ones (test_convert, on skimage's astronaut photograph)
        "torch": ["torch==2.14.1", "torchvision==0.29.1", "scikit-image"],
    },
    data_files=[("share/keras_retina/configs", [str(p) for p in sorted((HERE / "configs").glob("*.flags"))])],
    scripts=["bin/keras_retina"],  # silences TensorFlow's start-up lines before it is imported
    classifiers=["Programming Language :: Python :: 3", "Framework :: Keras"],
)
