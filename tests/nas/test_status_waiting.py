"""`nas status STUDY` with a trial that has not started (no pattern yet), as an interrupted study leaves one."""

import subprocess
import sys

from studyutil import add_finished, make_spec

from nas import store
from nas.reader import study_trials


def test_a_waiting_trial_without_a_pattern_is_listed(urls):
    spec = make_spec(urls, name="halfway", objectives=[{"metric": "lm_loss"}])
    add_finished(spec, [{"params": {"attn_ratio": "0", "ssm": "mamba2"}, "pattern": "M-M-",
                         "metrics": {"lm_loss": 3.0}}])
    store.open_study(spec).study.enqueue_trial({"attn_ratio": "all", "ssm": "mamba2"})  # WAITING, no attributes
    rows = study_trials(spec.storage_url, spec.name)
    assert [(r.status, r.pattern) for r in rows] == [("complete", "M-M-"), ("waiting", None)]
    shown = subprocess.run([sys.executable, "-m", "nas.cli", "status", spec.name, "--storage", spec.storage_url],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "waiting" in shown.stdout and "M-M-" in shown.stdout
