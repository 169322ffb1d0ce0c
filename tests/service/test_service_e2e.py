"""End to end, the compose topology on loopback without Docker: PostgreSQL (queue, Optuna, MLflow's
store), `mlflow server`, a Ray head from `ray start --head` (token authentication on) and `nas serve`;
a study submitted with `nas submit` runs to the end, and a malformed one is refused."""

from __future__ import annotations

import re

import optuna
import pytest
import yaml
from serviceutil import nas, serve, spec_data, stop, wait_for

from nas.service import queue

pytestmark = pytest.mark.slow


def test_a_study_submitted_through_the_cli_runs_to_the_end(env, db_url, ray_head, mlflow_server, tmp_path):
    env = {**env, "NAS_TRACKING": mlflow_server, "NAS_RAY_ADDRESS": ray_head}
    elsewhere = tmp_path / "not-here" / "studies.db"
    spec = tmp_path / "e2e.yaml"
    spec.write_text(yaml.safe_dump(spec_data("e2e", trials=3, concurrency=2, storage=f"sqlite:///{elsewhere}")))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec_data("e2e-bad", objectives=[{"metric": "decode_tps.4096"}])))

    r = nas("submit", str(bad), env=env)
    assert r.returncode == 2 and "does not measure" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = nas("submit", str(spec), "--priority", "7", env=env)
    assert r.returncode == 0, r.stderr
    study_id = int(re.search(r"submitted study (\d+)", r.stdout).group(1))
    assert [s.name for s in queue.list_studies(url=db_url)] == ["e2e"]  # the bad one left no row

    log = tmp_path / "serve.log"
    scheduler = serve(env, log, cwd=tmp_path)  # the Ray address from NAS_RAY_ADDRESS
    try:
        wait_for("the study to finish",
                 lambda: queue.get_study(study_id, url=db_url).status in ("done", "failed"),
                 180, every=1, logs=(log,))
        shown = nas("show", str(study_id), env=env)
        listed = nas("list", env=env)
    finally:
        assert stop(scheduler) == 0, log.read_text()[-3000:]
    s = queue.get_study(study_id, url=db_url)
    assert s.status == "done" and s.error is None and s.priority == 7
    assert f"on Ray at {ray_head}" in log.read_text()

    # Optuna's study lives in the service's PostgreSQL, whatever the spec said
    study = optuna.load_study(study_name="e2e", storage=db_url)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 3 and not elsewhere.parent.exists()
    urls = next(e for e in queue.events(study_id, url=db_url) if e.kind == "urls")
    assert mlflow_server in urls.message and f"the spec named storage sqlite:///{elsewhere}" in urls.message

    # MLflow's server has the parent run and one child run per trial, with their artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("nas/e2e")
    assert s.mlflow_experiment_id == exp.experiment_id
    runs = client.search_runs([exp.experiment_id])
    children = {r.data.tags["nas.trial"]: r for r in runs if "nas.trial" in r.data.tags}
    assert sorted(children) == ["0", "1", "2"]
    assert {a.path for a in client.list_artifacts(children["0"].info.run_id)} >= {"arch.yaml", "results.json"}

    assert shown.returncode == 0 and f"study {study_id} (e2e): done" in shown.stdout
    assert "trials: 3 complete" in shown.stdout and "claimed" in shown.stdout and "done" in shown.stdout
    assert listed.returncode == 0 and "e2e" in listed.stdout and "done" in listed.stdout
