"""Weight averaging: which weights of a run trained with --ema_momentum each step and file holds.

The optimizer keeps an exponential moving average of every trainable weight (training/optimizer.py:
Keras' `use_ema`, its momentum ramped up as min(m, t / (t + 10)) after step t). The paper trains
without one. The average spans about 1 / (1 - m) steps: a run of a few thousand steps wants
0.99-0.999; detectors trained for 100k+ steps (YOLO's, timm's) use 0.9998-0.9999.

BatchNorm statistics are not averaged again: they are moving averages already (momentum 0.99 in
Keras' layers; frozen in the ResNets here, as in the paper) and are not trainable weights; the
tiny backbone's GroupNorm has none.

Which weights, where:
- while training the model holds the raw weights: each step updates them, then the average;
- checkpoints/ckpt-N: the raw weights ("model"), the optimizer with the average, and the average
  again as "averaged" (`model_dir.averages_holder`), so a resume continues both exactly and
  `ModelDir.load_model` finds the average without building an optimizer;
- each evaluation during training swaps the average into the model (`averaged`), evaluates it,
  keeps it as model_dir/best/ when it is the best so far, then swaps the raw weights back; its
  metrics file says "weights": "averaged";
- at the end of training the model takes the average for good (`use_average`): the final
  evaluation, the report and model.keras are of the averaged weights;
- export, predict and evaluate load best/ (the average) or a checkpoint's "averaged" part.

MultiWorkerMirroredStrategy is refused: only the chief evaluates, and swapping weights there
alone would need every worker's part in the assignment.
"""

import contextlib

from keras_retina.errors import UsageError
from keras_retina.model_dir import ModelDir, assign_averages, averages_holder, holds_averages


def _averaging(model):
    """The optimizer keeping the average (inside a float16 loss-scale wrapper too)."""
    return getattr(model.optimizer, "inner_optimizer", model.optimizer)


def is_on(model):
    return bool(getattr(_averaging(model), "use_ema", False))


def checkpoint_parts(model):
    """The objects a training checkpoint holds besides model and optimizer: {"averaged": the
    optimizer's averages} with weight averaging on, else {}."""
    if not is_on(model):
        return {}
    return {"averaged": averages_holder(model, _averaging(model)._model_variables_moving_average)}


@contextlib.contextmanager
def averaged(model):
    """The model holds the averaged weights inside the block, its raw weights again after it."""
    variables = model.trainable_variables
    raw = [variable.numpy() for variable in variables]
    use_average(model)
    try:
        yield
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


def use_average(model):
    """The model's trainable weights become their averages (for good)."""
    assign_averages(model, _averaging(model)._model_variables_moving_average)


def check_resume(run, train_config):
    """UsageError when the run's latest checkpoint was trained with weight averaging and this
    training is not, or the other way round: the optimizer's saved state is laid out by position
    and would restore into the wrong slots (the average into the momentum)."""
    latest = ModelDir(run.path).latest_checkpoint()
    if latest and holds_averages(latest) != bool(train_config.ema_momentum):
        had = "with" if holds_averages(latest) else "without"
        raise UsageError(f"--model_dir={run.path} was trained {had} weight averaging (--ema_momentum) and this "
                         f"run {'is not' if had == 'with' else 'is'}: resume with the setting it was trained with, "
                         f"or use a new --model_dir.")
