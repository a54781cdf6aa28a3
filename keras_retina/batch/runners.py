"""The Beam runner a batch command runs on, and its pipeline options.

`pipeline_options(runner, workers, extra)`: "direct" is Beam's local runner: with `workers` > 1 it
runs that many worker processes (the FnApi runner in multi-processing mode: offline, each worker
loads the model once), with 1 everything runs in this process (in memory). "prism" (Beam's newer
local runner: it downloads its binary on first use), "dataflow", "flink" and "spark" hand the
pipeline to that engine; `extra` holds Beam's own options for it as one string
(`--project=... --region=... --temp_location=gs://...` for Dataflow, `--flink_master=...`,
`--spark_master_url=...`; docs/scale.md). The options are handed to Beam's FileSystems at once:
the launcher lists inputs and writes the manifest before any pipeline runs, and s3:// and azfs://
find their credentials and regions in them.
"""

import shlex

RUNNERS = {"direct": "DirectRunner", "prism": "PrismRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner",
           "spark": "SparkRunner"}


def pipeline_options(runner="direct", workers=1, extra=""):
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    args = shlex.split(extra or "")
    if runner == "direct":
        mode = "multi_processing" if workers > 1 else "in_memory"
        args += [f"--direct_num_workers={max(1, workers)}", f"--direct_running_mode={mode}",
                 "--default_sdk_harness_log_level=WARNING"]
    options = PipelineOptions(args, runner=RUNNERS[runner])
    FileSystems.set_options(options)
    return options
