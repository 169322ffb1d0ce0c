"""MLflow records: one parent run per study, a nested child run per trial.

The parent holds the spec (as an artifact) and, at the end, the Pareto set; each child holds the
trial's flattened `ArchConfig` as params, its pattern, every metric, the training curves per step,
and the `ArchConfig` YAML. Trial and run point at each other: the run is tagged with the study and the
trial number, the trial's user attributes hold the run id.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from workers.result import TrialResult, spread_metrics

__all__ = ["Tracker", "flatten"]

log = logging.getLogger(__name__)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Tracker:
    def __init__(self, uri: str, study: str):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # MLflow prints each run's address, credentials of the tracking URL and all, when a run ends
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its schema-migration chatter
        from mlflow.tracking import MlflowClient

        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.uri, self.study = uri, study
        self.client = MlflowClient(tracking_uri=uri)
        name = f"nas/{study}"
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            artifacts = None
            if uri.startswith("sqlite:///"):  # keep the embedded default's artifacts beside its database
                artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / study).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(name, artifact_location=artifacts)
        else:
            self.experiment_id = exp.experiment_id

    def parent_run(self, run_id: str | None, spec_yaml: str) -> str:
        """The study's parent run: the one recorded before (resumed studies) or a new one."""
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
                if run.info.lifecycle_stage == "active":
                    if run.info.status != "RUNNING":
                        self.client.update_run(run_id, status="RUNNING")
                    return run_id
            except Exception:  # the tracking store was reset: start a new parent
                log.warning("parent run %s not found; starting a new one", run_id)
        run = self.client.create_run(
            self.experiment_id, run_name=self.study, tags={"nas.study": self.study, "nas.kind": "study"}
        )
        self.client.log_text(run.info.run_id, spec_yaml, "spec.yaml")
        return run.info.run_id

    def log_trial(
        self,
        parent: str,
        trial: int,
        arch: dict[str, Any],
        metrics: dict[str, float],
        results: list[TrialResult],
        state: str,
        failure: dict | None = None,
    ) -> str:
        from mlflow.entities import Metric, Param, RunTag

        # a driver killed while recording left a partial run for this trial: replace it
        for old in self.client.search_runs(
            [self.experiment_id], f"tags.`nas.trial` = '{trial}' and tags.`nas.study` = '{self.study}'"
        ):
            self.client.delete_run(old.info.run_id)
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial}",
            tags={
                "mlflow.parentRunId": parent,
                "nas.study": self.study,
                "nas.trial": str(trial),
                "nas.pattern": arch["pattern"],
                "nas.state": state,
            },
        )
        rid = run.info.run_id
        params = [Param(k, str(v)[:500]) for k, v in flatten(arch).items()]
        ts = 0
        points = [Metric(k, float(v), ts, 0) for k, v in metrics.items()]
        if metrics and len(results) > 1:  # each metric's spread over the seeds beside their mean
            points += [Metric(f"sd.{k}", v, ts, 0) for k, v in spread_metrics(results).items()]
        for r in results:
            suffix = f".seed{r.seeds.get('model', 0)}" if len(results) > 1 else ""
            for task, curve in r.curves().items():
                points += [Metric(f"train_loss.{task}{suffix}", loss, ts, step) for step, _, loss in curve]
        tags = []
        if failure:
            tags = [RunTag("nas.failure", json.dumps(failure)[:5000])]
        for i in range(0, len(points), 900):  # MLflow takes at most 1000 entries per batch
            self.client.log_batch(rid, metrics=points[i : i + 900], params=params if i == 0 else [], tags=tags)
        if not points:
            self.client.log_batch(rid, params=params, tags=tags)
        self.client.log_text(rid, yaml.safe_dump(arch, sort_keys=False), "arch.yaml")
        if results:
            dumped = [r.model_dump(mode="json") for r in results]
            self.client.log_text(rid, json.dumps(dumped, indent=1), "results.json")
        self.client.set_terminated(
            rid, status="FINISHED" if state == "COMPLETE" else "FAILED" if state == "FAIL" else "KILLED"
        )
        return rid

    def finish(self, parent: str, pareto: list[dict[str, Any]], status: str = "FINISHED") -> None:
        self.client.log_text(parent, json.dumps(pareto, indent=1), "pareto.json")
        self.client.set_terminated(parent, status=status)

    def run_url(self, run_id: str) -> str:
        return f"{self.uri} experiment {self.experiment_id} run {run_id}"
