"""A sweep as MLflow holds it: the experiment, one parent "sweep" run, and a child run per config.

The parent run carries a `sweep.json` manifest (which config trained in which run), so the report can be
rebuilt from MLflow alone, including configs a resumed sweep reused rather than trained again.
"""

import json
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig

from src import tracking
from src.sweep import DONE, TERMINAL, PlannedConfig, sweep_id_for

ROLE_TAG = "netsweep.role"
MANIFEST = "sweep.json"
UNFINISHED_STATUSES = ("RUNNING", "SCHEDULED")


@dataclass
class SweepRecord:
    client: object
    uri: str
    experiment_id: str
    experiment: str
    sweep_id: str
    parent_run_id: str
    entries: dict = field(default_factory=dict)  # config_hash -> manifest entry
    skipped: int = 0

    @classmethod
    def open(cls, config: DictConfig, plans: list[PlannedConfig], settings) -> "SweepRecord":
        """Create (or, for the same grid, reopen) the experiment and the parent run before any worker starts."""
        uri = tracking.resolve_tracking_uri(config.tracking.uri)
        client = tracking.get_client(uri)  # creates a fresh store, here, before any worker starts
        experiment = str(config.tracking.experiment)
        experiment_id = tracking.ensure_experiment(client, experiment)
        tracking.prefer_wal(uri)
        sweep_id = sweep_id_for(experiment, [p.config_hash for p in plans])
        found = tracking.search_all(
            client, experiment_id, f"tags.sweep_id = '{sweep_id}' and tags.`{ROLE_TAG}` = 'sweep'"
        )
        entries = {}
        if found:
            parent_run_id = found[0].info.run_id
            client.update_run(parent_run_id, status="RUNNING")
            entries = {e["config_hash"]: e for e in tracking.read_json(client, parent_run_id, MANIFEST).get("configs", [])}
        else:
            overrides = [o for o in config.hydra.overrides.task]
            parent_run_id = tracking.RunRecorder.create(
                client,
                experiment_id,
                f"sweep {sweep_id} ({len(plans)} configs)",
                {"sweep_id": sweep_id, ROLE_TAG: "sweep", "outcome": "running", "sweep_overrides": " ".join(overrides)},
            ).run_id
            tracking.RunRecorder(client, parent_run_id).log_params(
                {"n_configs": len(plans), "n_jobs": settings.n_jobs, "backend": settings.backend}
            )
        record = cls(client, uri, experiment_id, experiment, sweep_id, parent_run_id, entries)
        print(f"[sweep {sweep_id}] parent run {parent_run_id} in experiment '{experiment}' ({uri})", flush=True)
        return record

    def prepare(self, plans: list[PlannedConfig], resume: bool) -> None:
        """Skip configs already finished or diverged in this experiment; create a child run for the rest."""
        done = self._done_runs() if resume else {}
        for plan in plans:
            previous = done.get(plan.config_hash)
            if previous is not None:
                plan.run_id, plan.outcome, plan.reused = previous.info.run_id, previous.data.tags["outcome"], True
                self.skipped += 1
                print(f"[sweep {self.sweep_id}] skip {plan.name}: already {plan.outcome} in run {plan.run_id}",
                      flush=True)
            else:
                plan.run_id = self._create_child(plan)
            self.entries[plan.config_hash] = {
                "config_hash": plan.config_hash,
                "name": plan.name,
                "overrides": plan.overrides,
                "run_id": plan.run_id,
            }
        self.write_manifest()

    def _done_runs(self) -> dict:
        runs = {}
        for outcome in DONE:
            for run in tracking.search_all(self.client, self.experiment_id, f"tags.outcome = '{outcome}'"):
                key = run.data.tags.get("config_hash")
                if key and (key not in runs or run.data.tags["outcome"] == "finished"):
                    runs[key] = run
        return runs

    def _create_child(self, plan: PlannedConfig) -> str:
        recorder = tracking.RunRecorder.create(
            self.client,
            self.experiment_id,
            plan.name,
            {
                "mlflow.parentRunId": self.parent_run_id,
                "sweep_id": self.sweep_id,
                "config_hash": plan.config_hash,
                "outcome": "scheduled",
                "overrides": " ".join(plan.overrides),
            },
        )
        self.client.update_run(recorder.run_id, status="SCHEDULED")
        return recorder.run_id

    def write_manifest(self) -> None:
        manifest = {"sweep_id": self.sweep_id, "experiment": self.experiment, "configs": list(self.entries.values())}
        tracking.RunRecorder(self.client, self.parent_run_id).log_text(json.dumps(manifest, indent=1), MANIFEST)

    # --- while running ----------------------------------------------------------------------------

    def run_statuses(self, run_ids: list) -> dict:
        return {run_id: self.client.get_run(run_id).info.status for run_id in run_ids if run_id}

    def best_val_acc(self, run_id: str) -> Optional[float]:
        return self.client.get_run(run_id).data.metrics.get("best_val_acc")

    def running_epochs(self, run_ids: list) -> dict:
        """{run_id: epochs logged so far} for the given runs that are RUNNING now."""
        running = {}
        for run_id, status in self.run_statuses(run_ids).items():
            if status == "RUNNING":
                running[run_id] = len(self.client.get_metric_history(run_id, "val_acc"))
        return running

    # --- the end ------------------------------------------------------------------------------------

    def reconcile(self, plans: list[PlannedConfig], interrupted: bool) -> None:
        """Close every child run this sweep created that a worker left open (killed, interrupted, crashed)."""
        for plan in plans:
            if plan.reused or plan.run_id is None:
                continue
            if plan.outcome not in TERMINAL:
                plan.outcome = "killed"
                plan.reason = "the sweep was interrupted" if interrupted else "its worker ended without a result"
            run = self.client.get_run(plan.run_id)
            if run.info.status in UNFINISHED_STATUSES:
                tracking.RunRecorder(self.client, plan.run_id).end(plan.outcome, plan.reason or None)

    @staticmethod
    def failed(plans: list[PlannedConfig]) -> list[PlannedConfig]:
        return [p for p in plans if p.outcome not in DONE]

    def failure_summary(self, plans: list[PlannedConfig]) -> str:
        failed = self.failed(plans)
        listed = "; ".join(f"{p.name}: {p.outcome} ({p.reason.splitlines()[0][:120]})" for p in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        return (
            f"{len(failed)} of {len(plans)} configs did not finish: {listed}{more}. "
            "Rerun the same command to train only those (see their runs in MLflow)"
        )

    def finish(self, plans: list[PlannedConfig], interrupted: bool) -> None:
        """Build the comparison report on the parent run and close it."""
        from src.report import build_report

        self.write_manifest()
        try:
            build_report(self.client, self.sweep_id, print_best=True)
        except Exception as exc:  # a report problem must not hide the sweep's own outcome
            print(f"[sweep {self.sweep_id}] could not build the report: {type(exc).__name__}: {exc}", flush=True)
        outcome = "killed" if interrupted else ("finished" if not self.failed(plans) else "error")
        parent = tracking.RunRecorder(self.client, self.parent_run_id)
        parent.end(outcome, None if outcome == "finished" else self.failure_summary(plans))
        counts = {o: sum(p.outcome == o for p in plans) for o in TERMINAL}
        print(
            f"[sweep {self.sweep_id}] done: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
            + f" ({self.skipped} reused). Browse: mlflow ui --backend-store-uri {self.uri}",
            flush=True,
        )
        print(f"[sweep {self.sweep_id}] rebuild the comparison: python -m src.report {self.sweep_id}", flush=True)
