"""`keras_retina tile-data`: large annotated pictures -> tiles with their boxes, as COCO JSON."""

from keras_retina.data.tile_dataset import tile_dataset
from keras_retina.errors import UsageError


def run(configs, options, args):
    if not options["tiles_dir"] or not options["tile"]:
        raise UsageError("tile-data needs --tiles_dir (where the tiles go) and --tile (their size in pixels; the "
                         "--image_size you will train at).")
    written = tile_dataset(configs["data"], options["tiles_dir"], options["tile"], options["tile_overlap"],
                           options["tile_rule"], options["tile_min_visible"], cut=options["tile_cut"],
                           empty=options["tile_empty"], image_format=options["tile_format"])
    cut = "kept as crowd boxes" if options["tile_cut"] == "ignore" else "dropped"
    for split, done in written.items():
        print(f"{split}: {done['pictures']} pictures -> {done['tiles']} tiles of {options['tile']} px, {done['boxes']} "
              f"boxes ({done['cut']} cut by a tile border and {cut}) -> {done['annotations']}")
    flags = " ".join(f"--{split}_annotations={done['annotations']} --{split}_images={done['images']}"
                     for split, done in written.items())
    print(f"Train on them: keras_retina train {flags} --image_size={options['tile']} --model_dir=...")
    return 0
