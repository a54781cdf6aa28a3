"""`keras_retina models`: the registered weights (name, task, published metric, size, licence, cached)."""

from keras_retina.pretrained import registry


def run(configs, options, args):
    print(registry.format_entries())
    return 0
