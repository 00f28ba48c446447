"""The sweep's winner, once the report has ranked it by the sweep's objective: its best finished run (by the
objective too) has its model evaluated the MLflow way (once per run) and registered under the name asked
for (alias "best"), tagged with the objective that chose it, or the lines say why not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from src.data.shared import DataShare
from src.experiment.runner import evaluate_in_background
from src.outcomes import Outcome
from src.report.build import winning_run
from src.report.load import Member, SweepData
from src.sweep.plan import Job
from src.sweep.record import SweepRecord
from src.tracking import names


@dataclass(frozen=True)
class WinnerUse:
    """What the sweep does with its winner."""

    register_as: str | None  # hydra.launcher.register_best: a model name, or None not to register
    log_model: bool  # tracking.log_model: runs save a model (without one, nothing to evaluate or register)
    evaluate: bool  # tracking.evaluate: evaluate the winner's model with mlflow.models.evaluate
    evaluation_log: Path | None = None  # the background evaluation's output (in the sweep's report folder)


def use_the_winner(
    data: SweepData, jobs: list[Job], record: SweepRecord, use: WinnerUse, share: DataShare | None
) -> list[str]:
    """Evaluate and register the winner of the ranked sweep `data` among this command's `jobs`; the lines
    to print."""
    winner = winning_run(data, outcomes={Outcome.FINISHED})
    job = next((j for j in jobs if winner is not None and j.run_id == winner.run_id), None)
    if winner is None or job is None or job.run_id is None or not use.log_model:
        why = _why_not(data, winner, use)
        return [f"winner not registered as {use.register_as}: {why}"] if use.register_as else []
    lines = []
    tags = record.store.run(job.run_id).tags
    if use.evaluate and names.EVALUATED not in tags:
        evaluate_in_background(record.store.uri, job.run_id, job.task_config, use.evaluation_log, share)
        lines.append(
            f"winner run {job.run_id}: evaluating with mlflow.models.evaluate in the background "
            f"(per_class_metrics.csv, confusion_matrix.png, then its tag {names.EVALUATED})"
        )
    if use.register_as:
        metric = data.objective.metric
        version_tags = {
            "sweep_id": record.sweep_id,
            "config": job.name,
            "objective": f"{metric}={winner.final(metric):.6g}",  # what made it the winner
            "best_val_acc": f"{winner.best_val_acc:.6g}",
            names.DATA_NAME: winner.params.get(names.DATA_NAME, ""),
            names.DATA_FINGERPRINT: tags.get(names.DATA_FINGERPRINT, ""),
        }
        version, moved = record.store.register_model(use.register_as, job.run_id, "best", version_tags)
        lines.append(
            f"{'registered' if moved else 'already registered'}: models:/{use.register_as}@best is version "
            f"{version} (run {job.run_id})"
        )
    return lines


def _why_not(data: SweepData, winner: Member | None, use: WinnerUse) -> str:
    if not use.log_model:
        return "tracking.log_model=false: runs save no model"
    if not data.best:
        return "no config has a result"
    if winner is None:
        return "the winning config has no finished run"
    return f"its run {winner.run_id} is not one of this command's configs"
