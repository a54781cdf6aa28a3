"""Compute precision: --mixed_precision, and what `auto` runs on the machine at hand.

Choices (`PRECISIONS`): none (float32), bfloat16, float16 (GPUs), and auto. Variables stay float32
in every policy, so checkpoints work with any of them; the label encoder, losses and decoder
always compute in float32.

`auto`:
- on a GPU, bfloat16 from compute capability 8.0 (Ampere's tensor cores), float32 below;
- on a CPU, by measurement. A CPU's flags do not tell: an AMD EPYC Zen 4 with `avx512_bf16` and no
  AMX runs a ResNet-50 RetinaNet 1.9x faster in bfloat16, an Intel Xeon with the same flag and no
  AMX 1.5x slower (docs/benchmarks.md). The first time a model's shape runs on a machine, `auto`
  builds the model's network twice (random weights, float32 and mixed_bfloat16), calls each on
  the canvas of a 4:3 photo (the square for resize=square), forward only for inference (batch 1)
  and forward + backward for training (the run's batch per replica: small networks gain from
  bfloat16 at a batch of 16 and lose at 1), alternating the two so that both see the same
  machine load, and runs bfloat16 when its median is at least `MARGIN` faster. The figures are
  cached as JSON in `$KERAS_RETINA_HOME/precision/` (default `~/.cache/keras_retina/precision`)
  under a key of everything that changes the answer (`measurement_key`: the CPU's model name and
  flags, the TensorFlow version, the threads, inference or training, the batch, the network's shape); a
  folder that cannot be written means measuring again in the next process (said once).
- Multi-worker training: every worker measures (or reads its cache) and the workers average their
  ratios in one all-reduce, so all of them compute in the same precision.

`resolve` prints once per process what `auto` chose and why (the CPU, its flags, the ratio).
"""

import dataclasses
import hashlib
import json
import math
import os
import statistics
import sys
import time

import keras
import tensorflow as tf

from keras_retina.files import cache_home

# --mixed_precision -> the Keras dtype policy; "auto" is decided per machine by `resolve`.
PRECISION_POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
PRECISIONS = tuple(PRECISION_POLICIES) + ("auto",)
MODES = ("inference", "training")
MARGIN = 0.1  # bfloat16 is chosen when it takes at most 90% of float32's time: a clear win, not noise
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")  # named in messages; never decides alone
MEASURE_SECONDS = 3.0  # per precision, at least `MIN_ROUNDS` calls each (at most `MAX_ROUNDS`)
MIN_ROUNDS, MAX_ROUNDS = 3, 15
_SAID = set()  # the messages printed in this process (each once)


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


def cache_dir():
    """`files.cache_home()`/precision ($KERAS_RETINA_HOME/precision, default ~/.cache/keras_retina/precision)."""
    return os.path.join(cache_home(), "precision")


def cpu_label(name, flags):
    """'AMD EPYC 9R14 (avx512_bf16, no AMX)': the CPU and the flags that bear on bfloat16."""
    present = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    amx = "" if "amx_bf16" in flags else ", no AMX"
    return f"{name or 'this CPU'} ({', '.join(present) or 'no bfloat16 instructions'}{amx})"


def network_shape(model_config):
    """What of a ModelConfig sets the network's cost: backbone, widths, classes, anchors and the
    probe's input (height, width): the canvas of a 4:3 landscape photo, or the square."""
    policy = model_config.resize_policy
    if policy.policy == "square":
        height, width = policy.size
    else:
        short, cap = policy.size
        height, width = (int(v) for v in policy.canvas(short, min(round(short * 4 / 3), cap)).numpy())
    return {"backbone": model_config.backbone, "input": [int(height), int(width)],
            "fpn_filters": model_config.fpn_filters, "head_filters": model_config.head_filters,
            "head_convs": model_config.head_convs, "head_norm": model_config.head_norm,
            "num_classes": model_config.num_classes,
            "anchors": len(model_config.aspect_ratios) * model_config.num_scales}


def measurement_key(shape, mode, cpu=None, batch=1):
    """The cache's key: a dict of everything that changes float32's and bfloat16's speeds."""
    name, flags = cpu if cpu is not None else cpu_info()
    return {"cpu": name, "flags": sorted(flags), "tensorflow": tf.__version__, "mode": mode, "batch": int(batch),
            "threads": [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                        tf.config.threading.get_intra_op_parallelism_threads(),
                        tf.config.threading.get_inter_op_parallelism_threads()],
            "network": shape}


def _cache_path(key, folder):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(folder, f"{key['mode']}-{key['network']['backbone']}-{digest}.json")


def read_measurement(key, folder=None):
    """The cached {"float32": s, "bfloat16": s, ...} for `key`, or None (none, another key, unreadable)."""
    path = _cache_path(key, folder or cache_dir())
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("key") != key:
        return None
    seconds = [found.get(name) for name in ("float32", "bfloat16")]
    return found if all(isinstance(s, float) and math.isfinite(s) and s > 0 for s in seconds) else None


def write_measurement(key, measured, folder=None):
    """Caches `measured` under `key`; returns its path, or None where the folder cannot be written."""
    folder = folder or cache_dir()
    path = _cache_path(key, folder)
    try:
        os.makedirs(folder, exist_ok=True)
        part = f"{path}.part-{os.getpid()}"
        with open(part, "w") as f:
            json.dump({**measured, "key": key}, f, indent=2)
        os.replace(part, path)
    except OSError:
        return None
    return path


def time_network(model_config, mode, seconds=None, *, batch=1):
    """{"float32": s, "bfloat16": s, "rounds": n}: median seconds of one call of the network (`batch`
    pictures of `network_shape`'s input, random weights) in each precision, forward for "inference",
    forward + backward for "training", the two alternating: at least `MIN_ROUNDS` calls each, more
    until `seconds` (default `MEASURE_SECONDS`) each have passed, at most `MAX_ROUNDS`."""
    from keras_retina.modeling.retinanet import RetinaNet

    seconds = MEASURE_SECONDS if seconds is None else seconds
    shape = network_shape(model_config)
    config = dataclasses.replace(model_config, backbone_weights=None)
    pictures = tf.random.uniform([batch, *shape["input"], 3], 0, 255, seed=0)
    before = keras.mixed_precision.global_policy()
    calls = {}
    try:
        for name, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
            keras.mixed_precision.set_global_policy(policy)
            calls[name] = _network_call(RetinaNet(config=config), mode)
            calls[name](pictures)  # traced and warmed up
    finally:
        keras.mixed_precision.set_global_policy(before)
    times = {name: [] for name in calls}
    start = time.perf_counter()
    while len(times["float32"]) < MAX_ROUNDS and (
            len(times["float32"]) < MIN_ROUNDS or time.perf_counter() - start < 2 * seconds):
        for name, call in calls.items():
            began = time.perf_counter()
            call(pictures)
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()} | {"rounds": len(times["float32"])}


def _network_call(network, mode):
    """A function running the network once (forward, or forward + backward) and waiting for it."""

    @tf.function(reduce_retracing=True)
    def forward(pictures):
        outputs = tf.nest.flatten(network(pictures, training=False))
        return tf.add_n([tf.reduce_sum(tf.cast(out, tf.float32)) for out in outputs])

    @tf.function(reduce_retracing=True)
    def forward_backward(pictures):
        with tf.GradientTape() as tape:
            outputs = tf.nest.flatten(network(pictures, training=True))
            total = tf.add_n([tf.reduce_sum(tf.cast(out, tf.float32)) for out in outputs])
        return tape.gradient(total, network.trainable_variables)

    def call(pictures):
        result = (forward if mode == "inference" else forward_backward)(pictures)
        tf.nest.map_structure(lambda t: t.numpy() if t is not None else None, result)

    return call


def choose(ratio):
    """bfloat16's time over float32's -> "bfloat16" when it takes at most 1 - `MARGIN` of it, else "none"."""
    return "bfloat16" if ratio <= 1 - MARGIN else "none"


def _say(message):
    if message not in _SAID:
        _SAID.add(message)
        print(message, flush=True)


def agree(ratio, strategy):
    """bfloat16's time over float32's, averaged (in log) over a multi-worker `strategy`'s workers so
    that each decides alike; `ratio` itself with one worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return ratio
    value = strategy.run(lambda: tf.constant(math.log(ratio), tf.float32))
    mean = strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
    return math.exp(float(mean))


def decide_auto(model_config, mode="inference", *, batch=1, strategy=None, gpus=None, cpu=None, folder=None,
                measure=None):
    """"auto" -> "bfloat16" or "none" on this machine for this model at `batch` pictures a call
    (module docstring), printing once why. gpus/cpu: this machine's unless given (tests);
    measure(model_config, mode, batch=) -> {"float32": s, "bfloat16": s, ...}: `time_network` unless given."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}.")
    gpus = gpu_capabilities() if gpus is None else gpus
    if gpus:
        native = any(tuple(capability) >= (8, 0) for capability in gpus)
        _say(f"--mixed_precision=auto: {'bfloat16' if native else 'float32'} (GPU compute capability "
             f"{'.'.join(str(v) for v in max(gpus))}: bfloat16 is native from 8.0).")
        return "bfloat16" if native else "none"
    cpu = cpu_info() if cpu is None else cpu
    folder = folder or cache_dir()
    key = measurement_key(network_shape(model_config), mode, cpu, batch)
    measured, where = read_measurement(key, folder), "cached"
    if measured is None:
        size = "x".join(str(v) for v in key["network"]["input"])
        _say(f"--mixed_precision=auto: timing this model's network in float32 and bfloat16 on {cpu_label(*cpu)} "
             f"({mode}, batch {batch} of {size}), once for this machine ...")
        measured = {name: float(value)
                    for name, value in (measure or time_network)(model_config, mode, batch=batch).items()}
        path = write_measurement(key, measured, folder)
        where = f"cached in {path}" if path else f"not cached: {folder} cannot be written"
    own = measured["bfloat16"] / measured["float32"]
    ratio = agree(own, strategy)
    choice = choose(ratio)
    speed = f"{1 / ratio:.2f}x faster" if ratio < 1 else f"{ratio:.2f}x slower"
    calls = f"{measured['float32'] * 1000:.0f} ms against {measured['bfloat16'] * 1000:.0f} ms a call"
    if ratio != own:
        calls = f"the mean of the workers' measurements; this worker's: {calls}"
    _say(f"--mixed_precision=auto: {'bfloat16' if choice == 'bfloat16' else 'float32'} for {mode} "
         f"(bfloat16 measured {speed} than float32 on {cpu_label(*cpu)}: {calls}; {where}).")
    return choice


def resolve(name, model_config=None, mode="inference", *, batch=1, strategy=None, gpus=None, cpu=None, folder=None,
            measure=None):
    """--mixed_precision (none, bfloat16, float16, auto) -> the precision to run, "auto" decided by
    `decide_auto` for `model_config` (a ModelConfig, or a function returning it, called only when
    needed; required with auto). An explicit bfloat16 on a CPU where a measurement of this model
    says it is slower prints a warning with the measured ratio."""
    name = name or "none"
    if callable(model_config) and name in ("auto", "bfloat16"):
        model_config = model_config()
    if name == "auto":
        if model_config is None:
            raise ValueError("--mixed_precision=auto needs the model's settings to measure it.")
        return decide_auto(model_config, mode, batch=batch, strategy=strategy, gpus=gpus, cpu=cpu, folder=folder,
                           measure=measure)
    if name == "bfloat16" and model_config is not None and not (gpu_capabilities() if gpus is None else gpus):
        cpu = cpu_info() if cpu is None else cpu
        measured = read_measurement(measurement_key(network_shape(model_config), mode, cpu, batch), folder)
        ratio = measured["bfloat16"] / measured["float32"] if measured else None
        if ratio and choose(ratio) == "none":
            print(f"WARNING: --mixed_precision=bfloat16 on {cpu_label(*cpu)}: measured {ratio:.2f}x float32's "
                  f"time for this model ({mode}); --mixed_precision=auto or none runs float32 here.",
                  file=sys.stderr, flush=True)
    return name


def set_precision(name, model_config=None, mode="inference", *, batch=1, strategy=None):
    """--mixed_precision for every model built from here on (variables stay float32; the label
    encoder, losses and decoder always compute in float32); "auto" is decided by `resolve` for
    `model_config` in `mode` ("inference" or "training") at `batch` pictures a call. Returns the
    precision set."""
    name = resolve(name, model_config, mode, batch=batch, strategy=strategy)
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[name])
    return name
