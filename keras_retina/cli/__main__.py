"""`python -m keras_retina.cli`: the `keras_retina` command."""

from keras_retina.cli.main import run

run()
