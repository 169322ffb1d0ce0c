"""`nas run` and `nas eval` as a person (or a scheduler's log) sees them: a request the cluster can never
hold is refused before anything exists; a trial that waits says why; Ctrl-C marks the trials in flight
interrupted and prints the resume command; a pipe gets progress lines as the run goes, not at its end."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
from studyutil import SPACE, micro_profile

pytestmark = pytest.mark.slow


def nas(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def ray_cpus() -> int:
    """The CPUs a local Ray instance finds here (it reads the cgroup's quota, as `ray.init` does)."""
    from ray._private.utils import get_num_cpus

    return int(get_num_cpus())


def _ctrl_c_reaches() -> None:
    """In the child: SIGINT at its default, so that Python turns it into KeyboardInterrupt as a terminal's Ctrl-C
    would. A shell script started in the background (`nohup bash .ci/run &`) ignores SIGINT, its children inherit
    that, and Python then never sees the signal this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write(tmp_path, name, **kw):
    data = {"name": name, "space": SPACE, "budget": {"trials": 2}, "concurrency": 2, "profile": micro_profile(),
            "storage": f"sqlite:///{tmp_path / 'studies.db'}", "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    data.update(kw)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, data["storage"]


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ({"gpus": 0.25}, ["0.25 GPU", "has no GPU", "resources: {gpus: 0}"]),
        ({"cpus": 512}, ["512 CPUs", "at most"]),
    ],
    ids=["gpu-on-a-cpu-machine", "more-cpus-than-a-node"],
)
def test_a_request_the_cluster_can_never_hold_is_refused_before_anything_exists(tmp_path, resources, words):
    path, _ = write(tmp_path, "never", resources=resources)
    t0 = time.time()
    r = nas("run", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    msg = r.stderr.strip()
    assert msg.startswith("error: each trial asks for") and "Traceback" not in msg and msg.count("\n") == 0, msg
    for w in words:
        assert w in msg, msg
    assert time.time() - t0 < 120  # refused, not left hanging at "starting"
    assert not (tmp_path / "studies.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_waiting_trial_says_why_and_ctrl_c_marks_the_trials_interrupted(tmp_path):
    """Each trial asks for every CPU of the local Ray instance: one runs, the other waits and says so; the
    output is a pipe, so progress comes as lines every few seconds; Ctrl-C then interrupts the run."""
    n = ray_cpus()
    # three trials in flight at once, one at a time on the CPUs: some trial waits until the last one runs
    path, storage = write(tmp_path, "busy", profile="cpu-tiny", resources={"cpus": n}, budget={"trials": 3},
                          concurrency=3)
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "run", str(path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_reaches)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (
            any("waiting for" in ln for _, ln in lines) and any("tok/s" in ln for _, ln in lines)
        ):
            assert proc.poll() is None, (lines, proc.stderr.read())
            time.sleep(0.5)
        text = "\n".join(ln for _, ln in lines)
        cpus = f"{n} CPU" + ("s" if n != 1 else "")
        assert f"waiting for {cpus}; the cluster's {cpus} are taken by other trials" in text, text
        assert "Ray: the request" in text
        assert any(ln.startswith("[0:") and "busy" in ln for _, ln in lines), text  # the periodic line
        assert "loss" in text and "tok/s" in text

        time.sleep(2.5)  # the runner records the wait every 2 s
        s = nas("status", "--storage", storage, cwd=tmp_path)
        assert s.returncode == 0 and "waiting" in s.stdout and f"busy: waiting for {cpus}" in s.stdout, s.stdout
        t = nas("status", "busy", "--storage", storage, cwd=tmp_path)
        assert f"waiting for {cpus}" in t.stdout, t.stdout

        proc.send_signal(signal.SIGINT)
        t_int = time.time()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    stderr = proc.stderr.read()
    assert proc.returncode == 130, stderr
    assert f"Resume with:  nas run {path}" in stderr and "Traceback" not in stderr, stderr
    # quiet by default: neither MLflow's table creation nor Ray's token notice
    assert "Creating initial MLflow database tables" not in stderr and "Token authentication" not in stderr
    assert time.time() - t_int < 120

    from nas.reader import list_studies, study_frame

    statuses = list(study_frame(storage, "busy")[1]["status"])
    interrupted = statuses.count("interrupted")
    assert interrupted >= 2 and "running" not in statuses, statuses
    assert f"{interrupted} interrupted" in stderr, stderr
    assert list_studies(storage).iloc[0]["status"] == "interrupted"
    s = nas("status", "--storage", storage, cwd=tmp_path)
    assert "interrupted" in s.stdout and "resume it with `nas run`" in s.stdout, s.stdout
    t = nas("status", "busy", "--storage", storage, cwd=tmp_path)
    assert t.stdout.count("interrupted") == interrupted and " running " not in t.stdout, t.stdout


def test_sigterm_interrupts_a_run_too(tmp_path):
    path, storage = write(tmp_path, "term", profile="cpu-tiny", budget={"trials": 1}, concurrency=1)
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "run", str(path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        from nas.reader import storage_exists, study_frame

        deadline = time.time() + 180
        while time.time() < deadline:  # until its trial is in flight
            if storage_exists(storage):
                try:
                    if (study_frame(storage, "term")[1]["status"] == "running").any():
                        break
                except Exception:  # the study is being created
                    pass
            time.sleep(0.5)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "term: interrupted" in stderr and "Resume with:  nas run" in stderr
    assert list(study_frame(storage, "term")[1]["status"]) == ["interrupted"]


def test_nas_eval_into_a_pipe_prints_progress_lines_as_it_goes(tmp_path):
    profile = micro_profile(tokens=4 * 32 * 400)
    profile["progress_every"] = 5
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", "eval", "--pattern", "M-*-", "--d-model", "32",
         "--profile", str(tmp_path / "p.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    lines = [(time.time(), ln.rstrip()) for ln in proc.stdout]
    proc.wait(timeout=300)
    end = time.time()
    assert proc.returncode == 0, proc.stderr.read()
    progress = [(t, ln) for t, ln in lines if ln.startswith("lm ") and "tok/s" in ln]
    assert progress and "loss" in progress[0][1], lines
    assert any("ETA" in ln for _, ln in progress) and any("done in" in ln for _, ln in progress)
    assert end - progress[0][0] > 1.0  # the first line came while it trained, not with the scorecard
    assert any(ln.startswith("mqar ") for _, ln in lines)
