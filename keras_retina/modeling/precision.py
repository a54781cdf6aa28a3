"""Compute precision: --mixed_precision, and whether this machine computes bfloat16 natively.

Choices (`PRECISIONS`): none (float32), bfloat16, float16 (GPUs), and auto: bfloat16 where the
hardware computes it natively (a GPU of compute capability 8.0 or more, or a CPU with AMX tiles:
`amx_bf16` in /proc/cpuinfo), float32 elsewhere. Asking for bfloat16 where it is not native prints
a warning naming the CPU (`resolve`). Variables stay float32 in every policy, so checkpoints work
with any of them.
"""

import sys

import keras
import tensorflow as tf

# --mixed_precision -> the Keras dtype policy; "auto" is decided per machine by `resolve`.
PRECISION_POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
PRECISIONS = tuple(PRECISION_POLICIES) + ("auto",)
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
    AMX (`amx_bf16`): where the hardware computes bfloat16 natively."""
    gpus = gpu_capabilities() if gpus is None else gpus
    if any(tuple(capability) >= (8, 0) for capability in gpus):
        return True
    flags = cpu_info()[1] if flags is None else flags
    return any(flag in flags for flag in FAST_BF16_CPU_FLAGS)


def resolve(name, flags=None, gpus=None, warn=True):
    """--mixed_precision (none, bfloat16, float16, auto) -> the precision to run ("auto" decided);
    warns on stderr when bfloat16 is asked for where it is not native. `flags`: the CPU's
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
