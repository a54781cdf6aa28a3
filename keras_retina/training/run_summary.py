"""The end of a training run: `summarise` (the final evaluation, the best checkpoint restored into
model.keras, the evaluation report of the model kept, summary.json) and `format_summary` (the
closing lines a person reads: where everything was saved, the best step, the metrics).
"""

import time

import tensorflow as tf

from keras_retina.data import cleaning
from keras_retina.evaluation import coco_metrics
from keras_retina.evaluation.evaluate import write_evaluation_report
from keras_retina.files import replace_atomically
from keras_retina.model_dir import ModelDir

_SKIPPED_KINDS = {kind for kind, (severity, _) in cleaning.KINDS.items() if severity != "fixed"}


def summarise(run, chief, model, manager, evaluator, train_config, *, sources, init_report, start):
    """The summary dict; on the chief also model.keras, the final evaluation and summary.json."""
    summary = {"steps": int(model.optimizer.iterations.numpy()), "batch_size": train_config.batch_size,
               "seconds_this_run": round(time.time() - start, 1),
               "model_dir": run.path, "checkpoint": manager.latest_checkpoint}
    if init_report is not None:
        summary["init_from"] = init_report
    if train_config.ema_momentum:  # training/weight_averaging.py
        summary["weights"] = f"averaged (ema_momentum {train_config.ema_momentum})"
    reports = sources.reports()
    if reports:  # what the readers fixed, skipped or dropped (cleaning.DataReport)
        summary["data"] = {split: report.as_dict() for split, report in reports.items()}
    if chief:
        if evaluator is not None:
            evaluator.set_model(model)  # also when fit did not run (nothing left to train)
            metrics = evaluator.run()
            summary["metrics"] = {k: metrics[k] for k in coco_metrics.METRIC_NAMES}
            summary["per_class_AP"] = metrics["per_class_AP"]
            if evaluator.stopped_at is not None:
                summary["stopped_early_at"] = evaluator.stopped_at
            best = run.best_record()
            evaluation, evaluated = evaluator.latest_evaluation, f"step {summary['steps']}"
            if best is not None:
                summary["best"] = {**best, "checkpoint": run.best_checkpoint()}
                # model.keras is the model export, predict and evaluate use: the best one
                tf.train.Checkpoint(model=model).restore(run.best_checkpoint()).expect_partial()
                if best["step"] != summary["steps"] and train_config.report:  # the report shows the model kept
                    _, evaluation = coco_metrics.evaluate_coco(model, evaluator.dataset, evaluator.label_map,
                                                               keep=True)
                    evaluated = f"the best checkpoint, step {best['step']}"
            if train_config.report:
                summary["report"] = write_evaluation_report(
                    evaluation, evaluator.label_map, sources.val, run.metrics_path(summary["steps"]),
                    {"model": run.path, "checkpoint": evaluated, "data": sources.val.name},
                    train_config.report_pictures, report_threshold=train_config.report_score_threshold)
        replace_atomically(run.keras_path, model.save)
        summary["keras_model"] = run.keras_path
        run.write_summary(summary)
    return summary


def format_summary(summary):
    minutes, seconds = divmod(int(summary["seconds_this_run"]), 60)
    lines = ["", "=" * 72,
             f"Trained {summary['steps']} steps at batch {summary['batch_size']} "
             f"({minutes}m{seconds:02d}s this run).",
             f"Model:       {summary.get('keras_model', '-')}",
             f"Checkpoint:  {summary['checkpoint']}",
             f"TensorBoard: tensorboard --logdir {ModelDir(summary['model_dir']).log_dir}"]
    for split, kinds in summary.get("data", {}).items():
        skipped = {kind: v["count"] for kind, v in kinds.items() if kind in _SKIPPED_KINDS}
        if skipped:
            lines.append(f"Data ({split}): skipped or dropped " + ", ".join(
                f"{n} x {kinds[k]['outcome']}" for k, n in skipped.items()) + " (see summary.json)")
    if "best" in summary:
        best = summary["best"]
        early = f"; stopped early at step {summary['stopped_early_at']}" if "stopped_early_at" in summary else ""
        lines.append(f"Best:        step {best['step']}, {best['metric']} {best['value']:.3f} ({best['checkpoint']}: "
                     f"what model.keras, evaluate, export and predict use{early})")
    if "report" in summary:
        lines.append(f"Report:      {summary['report']} (PR curves, thresholds, confusion matrix, errors)")
    if "metrics" in summary:
        lines.append(f"Last step's evaluation ({summary['steps']}):")
        lines.append(coco_metrics.format_metrics({**summary["metrics"], "per_class_AP": summary["per_class_AP"]}))
    lines.append("=" * 72)
    return "\n".join(lines)
