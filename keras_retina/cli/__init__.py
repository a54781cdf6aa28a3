"""The `keras_retina` command line (`main.run`); one module per command."""

from keras_retina.cli.main import run

__all__ = ["run"]
