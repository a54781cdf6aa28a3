import keras
import pytest

from keras_retina.modeling import precision


def test_auto_picks_bfloat16_only_where_it_is_native():
    assert precision.resolve("auto", flags={"avx512f", "amx_bf16", "amx_tile"}, gpus=[]) == "bfloat16"
    assert precision.resolve("auto", flags={"avx512f", "avx512_bf16", "avx512_vnni"}, gpus=[]) == "none"
    assert precision.resolve("auto", flags={"avx2"}, gpus=[]) == "none"
    assert precision.resolve("auto", flags=set(), gpus=[(8, 0)]) == "bfloat16"  # Ampere on
    assert precision.resolve("auto", flags=set(), gpus=[(7, 5)]) == "none"  # a T4: no native bfloat16
    assert precision.resolve(None, flags=set(), gpus=[]) == "none"


def test_bfloat16_without_amx_warns(capsys):
    assert precision.resolve("bfloat16", flags={"avx512_bf16"}, gpus=[]) == "bfloat16"
    err = capsys.readouterr().err
    assert "without AMX" in err and "--mixed_precision=auto" in err
    precision.resolve("bfloat16", flags={"amx_bf16"}, gpus=[])
    assert capsys.readouterr().err == ""


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
