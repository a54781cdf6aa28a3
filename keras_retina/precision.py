"""Compute precision: --mixed_precision, and whether this machine runs bfloat16 fast.

Choices (`train_config.PRECISION_POLICIES`): none (float32), bfloat16, float16 (GPUs), and
auto: bfloat16 where the hardware computes it natively (a GPU of compute capability 8.0 or
more, Ampere on, or a CPU with AMX tiles: `amx_bf16` in /proc/cpuinfo), float32 elsewhere. On a CPU without AMX, TensorFlow's oneDNN
runs bfloat16 slower than float32 (ResNet-50-FPN inference: 1.5x slower at batch 1 and 1.75x
at batch 8 on a 2-core Xeon with AVX512-BF16 but no AMX, README's performance section; 3.5x
slower reported on a Xeon with neither), so asking for bfloat16 there prints a warning naming
the CPU and suggesting auto. Variables stay float32
in every policy, so checkpoints work with any of them.
"""

import sys

import keras
import tensorflow as tf

from keras_retina.train_config import PRECISION_POLICIES

FAST_BF16_CPU_FLAGS = ("amx_bf16",)


def cpu_info(path="/proc/cpuinfo"):
    """(model name, set of instruction-set flags) of this machine's first CPU ("", set() where
    /proc/cpuinfo is not there)."""
    name, flags = "", set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
                if name and flags:
                    break
    except OSError:
        pass
    return name, flags


def gpu_capabilities():
    """(major, minor) compute capability of each visible GPU."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        found.append(tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))))
    return found


def bfloat16_is_native(flags=None, gpus=None):
    """True with a GPU of compute capability >= 8.0 (`gpus`: their capabilities) or on a CPU with
    AMX (`amx_bf16`): where bfloat16 runs faster than float32."""
    gpus = gpu_capabilities() if gpus is None else gpus
    if any(tuple(capability) >= (8, 0) for capability in gpus):
        return True
    flags = cpu_info()[1] if flags is None else flags
    return any(flag in flags for flag in FAST_BF16_CPU_FLAGS)


def resolve(name, flags=None, gpus=None, warn=True):
    """--mixed_precision (none, bfloat16, float16, auto) -> the precision to run ("auto" decided);
    warns on stderr when bfloat16 is asked for where it is computed slowly. `flags`: the CPU's
    instruction-set flags, `gpus`: the GPUs' compute capabilities (default: this machine's)."""
    name = name or "none"
    native = bfloat16_is_native(flags, gpus)
    if name == "auto":
        return "bfloat16" if native else "none"
    if name == "bfloat16" and not native and warn:
        model = cpu_info()[0] or "this CPU"
        print(f"WARNING: --mixed_precision=bfloat16 on {model} without AMX (no amx_bf16 flag) and without an "
              f"Ampere or newer GPU: bfloat16 runs slower than float32 here (1.5-3.5x on Xeons without AMX). Use "
              f"--mixed_precision=auto (float32 here) or none.", file=sys.stderr, flush=True)
    return name


def set_precision(name):
    """--mixed_precision for every model built from here on (variables stay float32; the label
    encoder, losses and decoder always compute in float32); "auto" is decided by `resolve`.
    Returns the precision set."""
    name = resolve(name)
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[name])
    return name
