"""The exception types of keras_retina: what went wrong decides what the user sees.

- `DataError`: a file, record or image the user handed us is missing or unusable (a COCO JSON
  that is not JSON, an undecodable picture, a TFRecord that is not a tf.Example, a model_dir
  without a checkpoint). The message names the file, record or image.
- `UsageError`: the values given do not fit together (two training sources, an export version
  that exists, a model_dir holding a model with other settings). The message names the flag or
  argument.

`SettingsError` is a UsageError about named settings (`settings`, their Python names, and
`detail`), so the command line can say it with its own flag names; library callers see the names.

All are `ValueError`s, so library callers that catch `ValueError` keep working. The command
line prints their message and exits with status 2; any other exception is a bug and keeps its
traceback.

`WorkerLost`: a multi-worker training lost one of its workers (it crashed, was killed or stopped
answering TensorFlow's heartbeats); the message says what to run again. Exit status 4.
"""


class DataError(ValueError):
    """Input data (a file, record, image or model_dir) is missing or unusable; the message names it."""


class UsageError(ValueError):
    """Arguments or flags that cannot work together; the message names the flag or argument."""


class SettingsError(UsageError):
    """`settings` (Python names) that cannot be used here, and why (`detail`): "a, b: detail"."""

    def __init__(self, settings, detail):
        self.settings, self.detail = tuple(settings), detail
        super().__init__(f"{', '.join(self.settings)}: {detail}")


class WorkerLost(RuntimeError):
    """A worker of a multi-worker training stopped; the message names the checkpoint the rerun resumes from."""
