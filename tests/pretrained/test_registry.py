"""Published weights by name (`pretrained.registry`): a local HTTP server stands in for the publishers.

Test entries (`$KERAS_RETINA_REGISTRY`) point at 127.0.0.1 and carry the checksums of files
torch.save wrote (random weights): a torchvision RetinaNet v2 and an ImageNet ResNet-50. Nothing
leaves the machine. Needs the optional `torch` extra; CI installs it.
"""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

sys.modules.setdefault("triton", None)  # see test_convert: torch's GPU compiler must not load after TensorFlow
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
skimage_data = pytest.importorskip("skimage.data")

from keras_retina.errors import DataError, UsageError  # noqa: E402
from keras_retina.model_dir import ModelDir  # noqa: E402
from keras_retina.pretrained import registry  # noqa: E402

from command_line import keras_retina  # noqa: E402
from conftest import REPO, TINY_FLAGS  # noqa: E402

REQUESTS = []


class _Publisher(http.server.SimpleHTTPRequestHandler):
    """Serves the test files; /truncated/ stops half-way, /slow/ waits a second first."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        REQUESTS.append(self.path)
        if self.path.startswith("/truncated/"):
            data = open(os.path.join(self.directory, self.path.split("/")[-1]), "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        if self.path.startswith("/slow/"):
            time.sleep(1.0)
            self.path = "/" + self.path.split("/")[-1]
        super().do_GET()


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def publisher(tmp_path_factory):
    """(base URL, files folder, registry path): the server and the test entries."""
    folder = tmp_path_factory.mktemp("publisher")
    torch.manual_seed(0)
    detector = torchvision.models.detection.retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None).eval()
    with torch.no_grad():
        detector.head.classification_head.cls_logits.bias.fill_(-2.0)  # detections to draw
    torch.save(detector.state_dict(), folder / "retinanet_v2.pth")
    backbone = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():  # statistics like a trained network's, so the normalisation matters
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.2, 5.0)
                module.running_mean.uniform_(-0.2, 0.2)
                module.weight.copy_(module.running_var.sqrt() * torch.empty_like(module.weight).uniform_(0.5, 1.0))
    torch.save(backbone.state_dict(), folder / "resnet50.pth")
    handler = lambda *args, **kwargs: _Publisher(*args, directory=str(folder), **kwargs)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    detector_sha = _sha256(folder / "retinanet_v2.pth")
    common = {"source": "test", "mib": 1, "architecture": "test", "categories": "COCO 2017, 80 classes",
              "inference": "test", "licence": "test", "recipe": "test", "cited": "this test"}
    entries = {
        "test/retinanet": {**common, "task": "detection", "format": "torchvision", "metric": "COCO box AP 0",
                           "url": f"{base}/retinanet_v2.pth",
                           "checksum": {"algorithm": "sha256_prefix", "value": detector_sha[:8]}},
        "test/resnet50": {**common, "task": "backbone", "format": "torchvision_resnet", "backbone":
                          "torchvision_resnet50", "metric": "none", "url": f"{base}/resnet50.pth",
                          "checksum": {"algorithm": "sha256", "value": _sha256(folder / "resnet50.pth")}},
        "test/wrong": {**common, "task": "backbone", "format": "torchvision_resnet", "backbone": "torchvision_resnet50",
                       "metric": "none", "url": f"{base}/resnet50.pth",
                       "checksum": {"algorithm": "sha256", "value": "0" * 64}},
        "test/truncated": {**common, "task": "detection", "format": "torchvision", "metric": "none",
                           "url": f"{base}/truncated/retinanet_v2.pth", "checksum": None},
        "test/slow": {**common, "task": "detection", "format": "torchvision", "metric": "none",
                      "url": f"{base}/slow/retinanet_v2.pth",
                      "checksum": {"algorithm": "sha256_prefix", "value": detector_sha[:8]}},
        "test/unpublished": {**common, "task": "backbone", "format": "torchvision_resnet", "backbone":
                             "torchvision_resnet50", "metric": "none", "url": f"{base}/resnet50.pth", "checksum": None},
        "test/offline": {**common, "task": "detection", "format": "torchvision", "metric": "none",
                         "url": "http://127.0.0.1:9/retinanet_v2.pth",
                         "checksum": {"algorithm": "sha256_prefix", "value": detector_sha[:8]}},
    }
    path = folder / "registry.json"
    path.write_text(json.dumps(entries))
    yield base, folder, str(path)
    server.shutdown()


@pytest.fixture
def home(publisher, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RETINA_REGISTRY", publisher[2])
    monkeypatch.setenv("KERAS_RETINA_HOME", str(tmp_path / "cache"))
    REQUESTS.clear()
    return tmp_path / "cache"


def test_the_registry_holds_the_publishers_entries():
    entries = registry.entries()
    for name in ("torchvision/retinanet_resnet50_fpn_coco", "torchvision/retinanet_resnet50_fpn_v2_coco",
                 "detectron2/retinanet_R_50_FPN_1x", "detectron2/retinanet_R_50_FPN_3x",
                 "detectron2/retinanet_R_101_FPN_3x", "torchvision/resnet50_imagenet_v1",
                 "torchvision/resnet50_imagenet_v2", "torchvision/resnet101_imagenet_v1",
                 "torchvision/resnet101_imagenet_v2", "keras/resnet50_imagenet", "keras/resnet101_imagenet"):
        item = entries[name]
        assert item["url"].startswith("https://") and item["task"] in registry.TASKS and item["metric"]
        checksum = item["checksum"]
        if item["source"] == "torchvision":  # torchvision names its files with the sha256's first 8 hex digits
            assert checksum["algorithm"] == "sha256_prefix" and item["url"].endswith(f"-{checksum['value']}.pth")
    assert entries["torchvision/retinanet_resnet50_fpn_v2_coco"]["metric"] == "COCO val2017 box AP 41.5"


def test_fetch_checks_caches_and_refuses_a_corrupt_file_without_deleting_it(home):
    path = registry.fetch("test/resnet50")
    assert os.path.dirname(path).startswith(str(home)) and len(REQUESTS) == 1
    assert registry.fetch("test/resnet50") == path and len(REQUESTS) == 1  # cached
    with open(path, "r+b") as f:
        f.write(b"garbage")
    with pytest.raises(DataError, match=r"resnet50.pth: sha256 [0-9a-f]{64}, expected .* left as it is: remove it"):
        registry.fetch("test/resnet50")
    assert open(path, "rb").read(7) == b"garbage" and len(REQUESTS) == 1
    os.remove(path)
    assert registry.fetch("test/resnet50") == path and len(REQUESTS) == 2  # removed by hand: fetched again
    assert not [n for n in os.listdir(os.path.dirname(path)) if ".part-" in n]


def test_a_bad_first_download_without_a_published_checksum_is_never_trusted(home, publisher, monkeypatch):
    """A mirror serving garbage for an entry with no published checksum (the detectron2 ones): the file is
    removed and no sha256 recorded; a file put there by hand is refused, never deleted; the right file
    is recorded once it has parsed; a killed download's partial file is cleaned up."""
    base, folder, _ = publisher
    (folder / "garbage").mkdir(exist_ok=True)
    (folder / "garbage" / "resnet50.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    monkeypatch.setenv("KERAS_RETINA_MIRROR", base + "/garbage/")
    with pytest.raises(DataError, match=r"/garbage/resnet50.pth: the downloaded file's content is not "
                                        r"torchvision_resnet weights .*removed"):
        registry.fetch("test/unpublished")
    where = home / "downloads" / "test__unpublished"
    assert not [n for n in os.listdir(where) if not n.startswith(".")]  # neither the file nor a sha256
    (where / "resnet50.pth").write_bytes(b"not weights")  # put there by hand
    with pytest.raises(DataError, match="content is not torchvision_resnet weights.*left as it is"):
        registry.fetch("test/unpublished")
    assert (where / "resnet50.pth").read_bytes() == b"not weights"
    (where / "resnet50.pth").unlink()
    monkeypatch.delenv("KERAS_RETINA_MIRROR")
    path = registry.fetch("test/unpublished")
    assert open(path + ".sha256").read().strip() == _sha256(folder / "resnet50.pth")
    (where / "resnet50.pth.part-999999").write_bytes(b"x" * 100)  # a download killed half-way
    assert registry.fetch("test/unpublished") == path and not [n for n in os.listdir(where) if ".part-" in n]


def test_failures_are_one_clear_line(home):
    with pytest.raises(DataError, match="connection closed after"):
        registry.fetch("test/truncated")
    folder = home / "downloads" / "test__truncated"
    assert not [n for n in os.listdir(folder) if not n.startswith(".")]  # nothing that looks finished
    with pytest.raises(DataError, match=r"sha256 [0-9a-f]{64}, expected 0{64}; removed"):
        registry.fetch("test/wrong")
    assert not (home / "downloads" / "test__wrong" / "resnet50.pth").exists()
    with pytest.raises(DataError) as caught:
        registry.fetch("test/offline")
    where = home / "downloads" / "test__offline" / "retinanet_v2.pth"
    assert "http://127.0.0.1:9/retinanet_v2.pth" in str(caught.value) and str(where) in str(caught.value)
    with pytest.raises(UsageError, match="Did you mean test/resnet50"):
        registry.entry("test/resnet5O")


def test_a_misspelt_name_gives_the_close_matches_before_any_work(home, tmp_path):
    """Not "no such file": a name shaped like the registry's gets its close matches, and train refuses
    it before reading (or generating) any data and before making the model_dir."""
    with pytest.raises(UsageError, match="Did you mean test/retinanet"):
        registry.resolve_model_dir("test/retinanett")
    assert registry.is_name("test/retinanet") and not registry.is_name("my_runs/retinanet")  # another prefix: a path
    work = tmp_path / "work"
    work.mkdir()
    result = keras_retina("predict", "--model=test/retinanett", "photo.png", cwd=work)
    assert result.returncode == 2 and "Did you mean test/retinanet" in result.stderr, result.stderr[-2000:]
    result = keras_retina("train", *TINY_FLAGS, "--init_from=test/retinanett", "--model_dir=run", "--demo_data=d",
                          cwd=work)
    assert result.returncode == 2 and "Did you mean test/retinanet" in result.stderr, result.stderr[-2000:]
    result = keras_retina("train", *TINY_FLAGS, "--init_from=nowhere", "--model_dir=run", "--demo_data=d", cwd=work)
    assert result.returncode == 2 and "--init_from=nowhere: no config.json there" in result.stderr
    assert sorted(os.listdir(work)) == []  # no demo data generated, no model_dir, no .lock


def test_a_file_downloaded_by_hand_is_picked_up(home, publisher):
    where = home / "downloads" / "test__offline" / "retinanet_v2.pth"
    where.parent.mkdir(parents=True)
    where.write_bytes((publisher[1] / "retinanet_v2.pth").read_bytes())
    assert registry.fetch("test/offline") == str(where) and not REQUESTS


def test_a_mirror_serves_users_behind_a_proxy(home, publisher, monkeypatch):
    monkeypatch.setenv("KERAS_RETINA_MIRROR", publisher[0] + "/")
    item = registry.entries()["test/offline"]  # its own URL is unreachable; the mirror has the file
    assert registry._url(item["url"]) == publisher[0] + "/retinanet_v2.pth"
    assert os.path.isfile(registry.fetch("test/offline")) and REQUESTS == ["/retinanet_v2.pth"]


FETCH = "import sys; from keras_retina.pretrained import registry; print(registry.fetch('test/slow'))"


def test_two_processes_asking_at_once_get_one_download(home, publisher):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    processes = [subprocess.Popen([sys.executable, "-c", FETCH], env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    paths = [p.communicate(timeout=300)[0].strip().splitlines()[-1] for p in processes]
    assert paths[0] == paths[1] and os.path.isfile(paths[0])
    assert [p.returncode for p in processes] == [0, 0] and REQUESTS == ["/slow/retinanet_v2.pth"]


def test_torchvisions_imagenet_resnet_gives_torchvisions_features(home, publisher):
    """torchvision's ResNet-50 (random weights, statistics like a trained network's) and our
    torchvision_resnet50 backbone built from the same registered file: the same C3-C5 features
    on a photograph (ImageNet normalisation inside our backbone)."""
    from keras_retina.modeling.backbone import build_backbone
    from keras_retina.pretrained.published_weights import load_imagenet_resnet

    path, state = registry.backbone_weights("test/resnet50", "torchvision_resnet50")
    assert path is None
    ours = build_backbone("torchvision_resnet50", (None, None, 3), freeze_at=2)
    assert load_imagenet_resnet(ours, state, "test/resnet50", 50) == 265
    photo = skimage_data.astronaut()[:256, :320].astype(np.float32)
    theirs = torchvision.models.resnet50(weights=None).eval()
    theirs.load_state_dict(torch.load(publisher[1] / "resnet50.pth"))
    x = (torch.from_numpy(photo / 255.0).permute(2, 0, 1)[None] - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        x = theirs.maxpool(theirs.relu(theirs.bn1(theirs.conv1(x))))
        c2 = theirs.layer1(x)
        expected = {"C3": theirs.layer2(c2)}
        expected["C4"] = theirs.layer3(expected["C3"])
        expected["C5"] = theirs.layer4(expected["C4"])
    features = ours(photo[None])
    for level, value in expected.items():
        reference = value[0].permute(1, 2, 0).numpy()
        error = np.abs(features[level][0].numpy() - reference).max()
        print(f"{level}: max |difference| {error:.2e} (values up to {np.abs(reference).max():.1f})")
        assert error <= 1e-3 * max(1.0, np.abs(reference).max())
    with pytest.raises(UsageError, match="give --backbone=torchvision_resnet50"):
        registry.backbone_weights("test/resnet50", "resnet50")


def _cli(*args, cwd, env):
    return keras_retina(*args, cwd=cwd, env=env)


def test_predict_from_pretrained_and_backbone_weights_by_name(home, publisher, tmp_path, tiny_coco):
    """The README's zero-setup command: predict --model=NAME downloads, converts once into the cache
    and draws; `keras_retina models` shows it cached; from_pretrained gives the model with its label
    map; train --backbone_weights=NAME starts from the registered ImageNet weights."""
    from PIL import Image

    import keras_retina

    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    Image.fromarray(skimage_data.astronaut()[:240, :320]).save(tmp_path / "photo.png")
    result = _cli("predict", "--model=test/retinanet", "photo.png", "--output_dir=out", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "converting test/retinanet once" in result.stdout and (tmp_path / "out" / "photo.png").exists()
    assert json.loads((tmp_path / "out" / "detections.json").read_text())
    again = _cli("predict", "--model=test/retinanet", "photo.png", "--output_dir=out2", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "converting" not in again.stdout and REQUESTS == ["/retinanet_v2.pth"]
    listing = _cli("models", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr[-2000:]
    line = next(line for line in listing.stdout.splitlines() if line.startswith("test/retinanet "))
    assert " yes " in line and "torchvision/retinanet_resnet50_fpn_v2_coco" in listing.stdout
    model = keras_retina.RetinaNet.from_pretrained("test/retinanet")
    assert len(model.label_map) == 80 and model.label_map[0]["name"] == "person"
    # (training pictures only: no evaluation, these runs are about where the weights come from)
    data = [f"--train_annotations={tiny_coco['train'][0]}", f"--train_images={tiny_coco['train'][1]}"]
    result = _cli("train", "--backbone=torchvision_resnet50", "--backbone_weights=test/resnet50", "--image_size=64",
                  "--fpn_filters=16", "--head_filters=16", "--head_convs=1", "--batch_size=2",
                  "--reference_batch_size=2", "--train_steps=1", "--lr_boundaries=", "--warmup_steps=0",
                  "--model_dir=run", "--verbose=2", *data, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Backbone initialised from test/resnet50 (265 tensors)" in result.stdout
    # fine-tuning from the registered detector: its architecture and weights, from the cache (no download)
    result = _cli("train", "--init_from=test/retinanet", "--image_size=64", "--max_image_size=64", "--batch_size=2",
                  "--reference_batch_size=2", "--train_steps=1", "--lr_boundaries=", "--warmup_steps=0",
                  "--model_dir=fine", "--verbose=2", *data, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initialised from" in result.stdout and REQUESTS == ["/retinanet_v2.pth", "/resnet50.pth"]
    assert ModelDir(str(tmp_path / "fine")).model_config().head_norm == "group_norm"  # v2's heads
    # convert --weights=NAME: the same file, converted into a model_dir of the user's choice
    result = _cli("convert", "--weights=test/retinanet", "--model_dir=converted", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ModelDir(str(tmp_path / "converted")).model_config().head_norm == "group_norm"
    assert len(REQUESTS) == 2
