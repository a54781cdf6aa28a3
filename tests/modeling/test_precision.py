import json
import os

import keras
import pytest
import tensorflow as tf

from keras_retina.modeling import precision
from keras_retina.modeling.model_config import ModelConfig

from conftest import TINY

ZEN4 = ("AMD EPYC 9R14 96-Core Processor", {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
XEON = ("Intel(R) Xeon(R) Platinum 8375C", {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
CONFIG = ModelConfig(num_classes=3, **TINY)


class Timings:
    """An injected `measure`: the seconds of each precision, and the calls made."""

    def __init__(self, float32, bfloat16):
        self.seconds, self.calls = {"float32": float32, "bfloat16": bfloat16}, []

    def __call__(self, model_config, mode, batch):
        self.calls.append((model_config, mode, batch))
        return dict(self.seconds, rounds=3)


@pytest.fixture(autouse=True)
def _fresh_messages():
    precision._SAID.clear()
    yield
    precision._SAID.clear()


def test_auto_on_a_cpu_runs_what_was_measured_faster(tmp_path, capsys):
    faster = Timings(1.0, 0.52)
    assert precision.resolve("auto", CONFIG, gpus=[], cpu=ZEN4, folder=str(tmp_path), measure=faster) == "bfloat16"
    assert faster.calls == [(CONFIG, "inference", 1)]
    out = capsys.readouterr().out
    assert "timing this model's network in float32 and bfloat16 on AMD EPYC 9R14" in out
    assert "bfloat16 for inference (bfloat16 measured 1.92x faster than float32 on AMD EPYC 9R14 96-Core " \
           "Processor (avx512_bf16, no AMX): 1000 ms against 520 ms a call; cached in" in out
    # the same flags, another CPU where bfloat16 is slower: float32 (its own entry in the cache)
    slower = Timings(1.0, 1.5)
    assert precision.resolve("auto", CONFIG, gpus=[], cpu=XEON, folder=str(tmp_path), measure=slower) == "none"
    assert "float32 for inference (bfloat16 measured 1.50x slower" in capsys.readouterr().out
    # within the margin: not a clear win, float32
    close = Timings(1.0, 0.95)
    cpu = ("Other CPU", {"avx2"})
    assert precision.resolve("auto", CONFIG, gpus=[], cpu=cpu, folder=str(tmp_path), measure=close) == "none"
    assert len(os.listdir(tmp_path)) == 3


def test_the_measurement_is_cached_under_what_changes_the_answer(tmp_path, capsys, monkeypatch):
    timings = Timings(1.0, 0.5)

    def auto(config=CONFIG, mode="inference", cpu=ZEN4):
        return precision.decide_auto(config, mode, gpus=[], cpu=cpu, folder=str(tmp_path), measure=timings)

    assert auto() == "bfloat16" and len(timings.calls) == 1
    precision._SAID.clear()
    assert auto() == "bfloat16" and len(timings.calls) == 1  # read back: no new measurement
    assert "cached)" in capsys.readouterr().out
    auto(mode="training")  # training is timed on its own (forward + backward)
    auto(config=ModelConfig(num_classes=3, **{**TINY, "image_size": 128}))  # another input
    auto(config=ModelConfig(num_classes=3, **{**TINY, "head_filters": 32}))  # another network
    auto(cpu=(ZEN4[0], ZEN4[1] | {"amx_bf16"}))  # other flags
    monkeypatch.setattr(tf, "__version__", "9.9.9")  # another TensorFlow
    auto()
    precision.decide_auto(CONFIG, "training", batch=16, gpus=[], cpu=ZEN4, folder=str(tmp_path), measure=timings)
    assert [call[1:] for call in timings.calls] == [("inference", 1), ("training", 1)] + [("inference", 1)] * 4 + [
        ("training", 16)]
    assert len(os.listdir(tmp_path)) == 7
    entry = json.loads((tmp_path / sorted(os.listdir(tmp_path))[0]).read_text())
    assert {"cpu", "flags", "tensorflow", "mode", "threads", "network"} <= set(entry["key"])
    assert entry["key"]["network"]["input"] == [64, 96]  # a 4:3 photo's canvas at S=64, L=107


def test_an_unreadable_or_forged_cache_entry_is_measured_again(tmp_path):
    timings = Timings(1.0, 0.5)
    precision.decide_auto(CONFIG, gpus=[], cpu=ZEN4, folder=str(tmp_path), measure=timings)
    (path,) = tmp_path.iterdir()
    for content in ("{not json", json.dumps({"float32": "1", "bfloat16": 0.5}), json.dumps([1, 2]),
                    json.dumps({**json.loads(path.read_text()), "bfloat16": float("nan")})):
        path.write_text(content)
        precision.decide_auto(CONFIG, gpus=[], cpu=ZEN4, folder=str(tmp_path), measure=timings)
    assert len(timings.calls) == 5 and json.loads(path.read_text())["bfloat16"] == 0.5


def test_a_cache_folder_that_cannot_be_written_still_decides(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder would be")
    timings = Timings(1.0, 0.5)
    assert precision.decide_auto(CONFIG, gpus=[], cpu=ZEN4, folder=str(blocked / "precision"),
                                 measure=timings) == "bfloat16"
    assert f"not cached: {blocked / 'precision'} cannot be written" in capsys.readouterr().out


def test_auto_on_gpus_follows_their_compute_capability(capsys):
    never = Timings(float("nan"), float("nan"))
    assert precision.resolve("auto", CONFIG, gpus=[(8, 0)], measure=never) == "bfloat16"  # Ampere on
    assert precision.resolve("auto", CONFIG, gpus=[(7, 5)], measure=never) == "none"  # a T4
    assert not never.calls and "GPU compute capability 7.5" in capsys.readouterr().out
    assert precision.resolve(None, gpus=[]) == "none"
    with pytest.raises(ValueError, match="needs the model's settings"):
        precision.resolve("auto", gpus=[])


def test_the_message_is_printed_once_per_process(tmp_path, capsys):
    for _ in range(3):
        precision.decide_auto(CONFIG, gpus=[], cpu=ZEN4, folder=str(tmp_path), measure=Timings(1.0, 0.5))
    assert capsys.readouterr().out.count("bfloat16 for inference") == 2  # measured, then cached


def test_explicit_bfloat16_warns_with_the_measured_ratio_where_it_is_slower(tmp_path, capsys):
    precision.decide_auto(CONFIG, gpus=[], cpu=XEON, folder=str(tmp_path), measure=Timings(1.0, 1.5))
    capsys.readouterr()
    assert precision.resolve("bfloat16", CONFIG, gpus=[], cpu=XEON, folder=str(tmp_path)) == "bfloat16"
    err = capsys.readouterr().err
    assert "--mixed_precision=bfloat16 on Intel(R) Xeon(R) Platinum 8375C (avx512_bf16, no AMX): measured " \
           "1.50x float32's time for this model (inference)" in err
    precision.decide_auto(CONFIG, gpus=[], cpu=ZEN4, folder=str(tmp_path), measure=Timings(1.0, 0.5))
    precision.resolve("bfloat16", CONFIG, gpus=[], cpu=ZEN4, folder=str(tmp_path))
    precision.resolve("bfloat16", CONFIG, "training", gpus=[], cpu=XEON, folder=str(tmp_path))  # not measured
    assert capsys.readouterr().err == ""


def test_time_network_times_the_models_own_network_in_both_precisions(monkeypatch):
    from keras_retina.modeling import retinanet

    built, calls = [], []

    class Recorded(retinanet.RetinaNet):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            built.append((self.config.backbone_weights, self.compute_dtype))

        def call(self, inputs, training=None, mask=None):
            calls.append((self.compute_dtype, tuple(inputs.shape), training))
            return super().call(inputs, training=training, mask=mask)

    monkeypatch.setattr(retinanet, "RetinaNet", Recorded)
    monkeypatch.setattr(precision, "MEASURE_SECONDS", 0.0)
    before = keras.mixed_precision.global_policy().name
    config = ModelConfig(num_classes=3, **{**TINY, "backbone_weights": "nowhere/weights.h5"})  # never read
    for mode, batch in (("inference", 1), ("training", 2)):
        built.clear(), calls.clear()
        seconds = precision.time_network(config, mode, batch=batch)
        assert seconds["rounds"] == precision.MIN_ROUNDS
        assert all(isinstance(seconds[name], float) and seconds[name] > 0 for name in ("float32", "bfloat16"))
        # the model's own network, built from random weights, in each precision, at the probe's input
        assert built == [(None, "float32"), (None, "bfloat16")]
        assert {c[0] for c in calls} == {"float32", "bfloat16"}
        assert {c[1:] for c in calls} == {((batch, 64, 96, 3), mode == "training")}
    assert keras.mixed_precision.global_policy().name == before


def test_choose_needs_a_clear_win():
    assert precision.choose(0.5) == "bfloat16" and precision.choose(1 - precision.MARGIN) == "bfloat16"
    assert precision.choose(0.95) == "none" and precision.choose(1.5) == "none"


def test_one_worker_keeps_its_own_ratio():
    assert precision.agree(0.5, tf.distribute.get_strategy()) == 0.5
    assert precision.agree(1.2, None) == 1.2


def test_cpu_info_reads_name_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx512f amx_bf16\n\n"
                    "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    assert precision.cpu_info(str(path)) == ("Intel(R) Xeon(R) Processor", {"fpu", "avx512f", "amx_bf16"})
    assert precision.cpu_info(str(tmp_path / "missing")) == ("", set())


@pytest.mark.parametrize("name, policy", [("none", "float32"), ("bfloat16", "mixed_bfloat16")])
def test_set_precision_sets_the_keras_policy(name, policy):
    try:
        precision.set_precision(name)
        assert keras.mixed_precision.global_policy().name == policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_set_precision_auto_measures_the_model_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RETINA_HOME", str(tmp_path))
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    monkeypatch.setattr(precision, "time_network", Timings(1.0, 0.5))
    try:
        assert precision.set_precision("auto", lambda: CONFIG, "training") == "bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert os.listdir(tmp_path / "precision")[0].startswith("training-tiny-")
    finally:
        keras.mixed_precision.set_global_policy("float32")
