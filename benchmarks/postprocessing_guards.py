"""Guards for a postprocessing option: trained runs evaluated without it and with it.

    python benchmarks/postprocessing_guards.py --runs=NAME:MODEL_DIR,... [--flags=--box_voting_sigma=0.025]

A postprocessing option (score voting, a score cut, ...) changes how detections are decoded, not
the weights, so it is judged on runs already trained: each run's best checkpoint is evaluated by
`keras_retina evaluate` on its own validation data as it is, then with `--flags`. A row gives
AP / AP50 / AP75 both ways and the difference in AP. Before an option enters a recipe, the recipe's
guards (the demo, the small-data benchmark's recipe run) must not lose beyond noise with it.
Writes benchmarks/results/postprocessing_guards.json (rendered into docs/training.md).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from localisation_yardstick import evaluate  # noqa: E402 - `keras_retina evaluate` of a run's best checkpoint

import results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True, help="NAME:MODEL_DIR pairs, comma-separated")
    parser.add_argument("--flags", default="--box_voting_sigma=0.025", help="the option's flags, space-separated")
    args = parser.parse_args()
    flags = args.flags.split()
    rows, figures = [], {}
    for pair in args.runs.split(","):
        name, model_dir = pair.split(":", 1)
        plain, option = evaluate(model_dir, []), evaluate(model_dir, flags)
        figures[name] = {"model_dir": model_dir, "without": plain, "with": option}
        rows.append([name, *(f"{plain[k]:.3f} / {option[k]:.3f}" for k in ("AP", "AP50", "AP75")),
                     f"{option['AP'] - plain['AP']:+.3f}"])
        print(f"{name}: AP {plain['AP']:.3f} -> {option['AP']:.3f} with {' '.join(flags)}", flush=True)
    table = {"caption": f"Each run's best checkpoint evaluated without, then with {' '.join(flags)}",
             "columns": ["run", "AP without / with", "AP50 without / with", "AP75 without / with", "AP difference"],
             "rows": rows}
    results.write("postprocessing_guards", "Guards for a postprocessing option",
                  "Runs already trained, each evaluated on its own validation data as it is and with the option "
                  "(benchmarks/postprocessing_guards.py's docstring).", [table],
                  figures={"flags": flags, "runs": figures}, page="docs/training.md")


if __name__ == "__main__":
    main()
