"""What every page shares: where the studies are, the cached reads, the study picker, local runs.

Reads go through `nas.reader` (fast SQL for what a page shows) and `nas`'s public functions; each
cached read is keyed by the storage URL, the study and `nas.reader.study_version`, so a refresh that
finds nothing new costs one small query, and one that finds a new trial recomputes everything once
(the Pareto front included) for every widget and every session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from nas import reader, record, units
from nas.report import ablation_report
from nas.settings import mask_url, settings
from search_spaces.config import ConfigError

if TYPE_CHECKING:
    import pandas as pd

# seconds between automatic refreshes while something runs
REFRESH_STUDIES = 5.0
REFRESH_STUDY = 10.0
# trials sampled for parameter importances (PED-ANOVA on more adds little and costs seconds)
IMPORTANCE_SAMPLE = 2000


# ----- where things are ---------------------------------------------------------------------------
def _service_urls() -> tuple[str, str] | None:
    m = mode()
    if m.service:
        try:
            return m.queue.service_urls(m.url)
        except Exception:
            return None
    return None


def storage_url() -> str:
    """The Optuna storage: the service's (NAS_STORAGE, else the queue's database) or the embedded default."""
    service = _service_urls()
    return service[0] if service else settings().storage


def tracking_url() -> str:
    service = _service_urls()
    return service[1] if service else settings().tracking


shown = mask_url  # a URL fit to show: its password replaced by ***


def nas_home() -> Path:
    return settings().home


@dataclass
class Mode:
    """Embedded (local runs) or service (the queue); `queue` is `nas.service.queue` in service mode."""

    service: bool
    queue: Any = None
    url: str | None = None
    problem: str | None = None  # why the queue is not used, when it exists but failed to load


def mode() -> Mode:
    import importlib

    try:
        queue = importlib.import_module("nas.service.queue")  # through sys.modules, where tests put a fake one
    except ModuleNotFoundError as e:
        if e.name in ("nas.service.queue",):
            return Mode(False)
        return Mode(False, problem=f"the queue needs the package {e.name}, which is not installed")
    except Exception as e:  # a broken queue module must not take the dashboard down
        return Mode(False, problem=f"the queue could not be loaded: {e}")
    try:
        url = queue.database_url()
    except Exception as e:
        return Mode(False, problem=f"the queue's database URL could not be read: {e}")
    return Mode(True, queue, url) if url else Mode(False)


# ----- cached reads -------------------------------------------------------------------------------
@st.cache_data(ttl=3, max_entries=8, show_spinner=False)
def studies(url: str) -> pd.DataFrame:
    return reader.list_studies(url)


@st.cache_data(ttl=3600, max_entries=6, show_spinner=False)
def _study_frame(url: str, name: str, version: tuple):
    return reader.study_frame(url, name)


def study_frame(url: str, name: str) -> tuple[tuple, reader.StudyMeta, pd.DataFrame]:
    """(version, StudyMeta, trials frame) of the study as it is now; read again only when a trial changed."""
    version = reader.study_version(url, name)
    with st.spinner("Reading the trials…"):  # shown only if it takes over half a second (a cache miss)
        meta, df = _study_frame(url, name, version)
    return version, meta, df


@st.cache_data(ttl=3, max_entries=8, show_spinner=False)
def finish_times(url: str, names: tuple[str, ...]) -> dict:
    return reader.finish_times(url, list(names))


PREFETCH = 3  # studies whose trials the Studies page reads ahead
_prefetching = threading.Lock()


def prefetch(url: str, names: list[str]) -> None:
    """Read these studies' trials into the shared cache on a background thread, so that a click on one of
    them opens its Study page without waiting for the read (a 10,000-trial study takes about a second).
    A no-op while an earlier prefetch still runs; a version already cached costs one small query."""
    if not names or not _prefetching.acquire(blocking=False):
        return

    def work() -> None:
        try:
            for name in names:
                with contextlib.suppress(Exception):  # the Study page says what is wrong, if it is opened
                    _study_frame(url, name, reader.study_version(url, name))
        finally:
            _prefetching.release()

    threading.Thread(target=work, name="nas-dashboard-prefetch", daemon=True).start()


def queued_studies(m: Mode) -> list[dict[str, Any]]:
    """The queue's studies as dicts (service mode), newest submission of each name only; read every time."""
    if not m.service:
        return []
    try:
        entries = m.queue.list_studies()
    except Exception as e:
        st.warning(f"the queue could not be read: {e}")
        return []
    out: dict[str, dict[str, Any]] = {}
    for s in sorted(entries, key=lambda s: -int(s.id)):
        d = {k: v for k, v in vars(s).items() if not k.startswith("_")}
        d["label"] = getattr(s, "label", d.get("status"))  # `running (cancelling)`
        out.setdefault(d.get("optuna_study_name") or d["name"], d)
    return list(out.values())


@st.cache_data(ttl=3600, max_entries=16, show_spinner="Computing parameter importances…")
def importances(url: str, name: str, version: tuple, target: int | None) -> dict[str, float] | str:
    """Parameter importances (PED-ANOVA) of the complete trials, for objective `target` or the whole front.

    Returns a sentence instead when the study cannot have them yet.
    """
    import warnings

    import numpy as np
    import optuna

    meta, df = _study_frame(url, name, version)
    done = df[df["status"] == "complete"]
    params = [
        c for c in df.columns if c.startswith("p.") and c != "p.seed" and done[c].astype(str).nunique() > 1
    ]
    if len(done) < 4:
        return f"Importances need at least 4 complete trials; this study has {len(done)}."
    if not params:
        return "Every complete trial has the same parameters, so none of them can matter more than another."
    if len(done) > IMPORTANCE_SAMPLE:
        done = done.sample(IMPORTANCE_SAMPLE, random_state=0)
    dists = reader.param_distributions(url, name)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = []
    values = done[meta.metrics].to_numpy(dtype=float)
    cols = [c[2:] for c in params]
    rows = done[params].to_numpy(dtype=object)
    for row, v in zip(rows, values, strict=False):
        ps = {c: x for c, x in zip(cols, row, strict=False) if x is not None and x == x and c in dists}
        trials.append(
            optuna.trial.create_trial(params=ps, distributions={c: dists[c] for c in ps}, values=list(v))
        )
    study = optuna.create_study(directions=meta.directions)
    study.add_trials(trials)
    target_fn = None
    if target is not None:
        sign = -1.0 if meta.directions[target] == "maximize" else 1.0  # PED-ANOVA takes lower as better
        target_fn = lambda t: sign * t.values[target]  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = optuna.importance.get_param_importances(study, target=target_fn)
    return {k: float(v) for k, v in imp.items() if np.isfinite(v)}


@st.cache_data(ttl=3600, max_entries=16, show_spinner="Computing the hypervolume history…")
def history(url: str, name: str, version: tuple) -> pd.DataFrame:
    """The front's hypervolume after each completion (`dashboard.analysis.hypervolume_history`), or the
    best value so far when the study has one objective (`best_so_far`)."""
    from dashboard import analysis

    meta, df = _study_frame(url, name, version)
    if len(meta.metrics) == 1:
        return analysis.best_so_far(df, meta.metrics[0], meta.directions[0])
    return analysis.hypervolume_history(df, meta.metrics, meta.directions)


@st.cache_data(ttl=3600, max_entries=16, show_spinner=False)
def choices(url: str, name: str, version: tuple) -> dict[str, list]:
    """Each categorical search parameter's choices in the search space's order (for axis ticks)."""
    from optuna.distributions import CategoricalDistribution

    return {
        p: list(d.choices)
        for p, d in reader.param_distributions(url, name).items()
        if isinstance(d, CategoricalDistribution)
    }


@st.cache_data(ttl=3600, max_entries=64, show_spinner=False)
def curves(url: str, name: str, number: int, version: tuple, tracking: str) -> dict[str, list]:
    """task -> [(step, tokens, loss)] of one trial: its stored result, else its MLflow run's histories."""
    out = reader.trial_curves(url, name, number)
    run_id = reader.trial_attrs(url, name, number, (record.MLFLOW_RUN,)).get(record.MLFLOW_RUN)
    if out or not run_id:
        return out
    try:  # a failed trial keeps no result in Optuna; its MLflow run has the curves up to the failure
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking)
        for key in client.get_run(run_id).data.metrics:
            if key.startswith("train_loss."):
                out[key.removeprefix("train_loss.")] = [(m.step, None, m.value) for m in
                                                       client.get_metric_history(run_id, key)]
    except Exception:
        pass
    return out


@st.cache_data(ttl=3600, max_entries=16, show_spinner="Computing the ablation report…")
def ablation(url: str, name: str, version: tuple) -> pd.DataFrame:
    import dataclasses

    import pandas as pd

    rows = ablation_report(url, name)
    cols = ["factor", "level", "is_base", "metric", "n", "mean", "ci", "diff", "diff_ci"]
    return pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=cols)


@st.cache_data(ttl=3600, max_entries=16, show_spinner="Computing the rank correlations…")
def fidelity(url: str, name: str, version: tuple, metrics: tuple[str, ...] = ()) -> list:
    """`nas fidelity --report`'s rows: the objectives', or those of `metrics` (("all",): every quality metric)."""
    from nas.fidelity import fidelity_report

    return fidelity_report(url, name, list(metrics) or None)


@st.cache_data(ttl=3600, max_entries=16, show_spinner="Computing the seed noise…")
def seed_noise(url: str, name: str, version: tuple) -> pd.DataFrame:
    """`nas seeds`' table: one row per metric; empty where no trial trained two seeds or more."""
    import dataclasses

    import pandas as pd

    from nas.seeds import SeedRow, seed_report

    try:
        rows = seed_report(url, name)
    except ConfigError:
        rows = []
    return pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=[f.name for f in dataclasses.fields(SeedRow)])


# ----- choosing a study ---------------------------------------------------------------------------
def pick_study(names: list[str], *, label: str = "Study", key: str = "study") -> str | None:
    """A study picker kept in the URL (?study=NAME), so a page can be linked and reloaded."""
    if not names:
        return None
    wanted = st.query_params.get(key)
    shown = f"_{key}_shown"
    if wanted in names and (wanted != st.session_state.get(shown) or key not in st.session_state):
        st.session_state[key] = wanted  # a link or the address bar chose it
    elif key in st.session_state and st.session_state[key] not in names:
        del st.session_state[key]
    if key in st.session_state:
        name = st.selectbox(label, names, key=key)
    else:
        name = st.selectbox(label, names, index=len(names) - 1, key=key)  # the newest study
    st.session_state[shown] = name
    if st.query_params.get(key) != name:
        st.query_params[key] = name
    return name


# ----- formatting ---------------------------------------------------------------------------------
def hms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return ""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def num(v: Any) -> str:
    if v is None or v != v:
        return "–"
    if isinstance(v, float) and abs(v) >= 1e4:
        return units.count(v)
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def best_text(best: dict[str, float], directions: list[str], metrics: list[str]) -> str:
    arrow = dict(zip(metrics, ("↑" if d == "maximize" else "↓" for d in directions), strict=False))
    return "  ·  ".join(f"{m} {num(v)} {arrow.get(m, '')}" for m, v in best.items())


# ----- MLflow -------------------------------------------------------------------------------------
def study_tracking(spec: dict[str, Any]) -> str:
    """Where a study's runs are: the service's tracking server, else its spec's store or the default."""
    if _service_urls() is not None:
        return tracking_url()
    return spec.get("tracking") or tracking_url()


def run_link(tracking: str, experiment_id: str | None, run_id: str | None) -> str | None:
    """The MLflow UI address of a run on a tracking server; None for a local store."""
    if run_id and experiment_id and tracking.startswith(("http://", "https://")):
        scheme, rest = tracking.split("://", 1)
        host, sep, path = rest.partition("/")
        base = f"{scheme}://{host.rpartition('@')[2]}{sep}{path}"  # a link shows no credentials
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return None


def local_mlflow_hint(tracking: str, experiment_id: str | None) -> str:
    where = f"experiment {experiment_id}, " if experiment_id else ""
    return (
        f"The runs are in the local MLflow store `{shown(tracking)}` ({where}run ids in the table). "
        "Browse them with "
        f"`mlflow ui --backend-store-uri {shown(tracking)}` and open http://127.0.0.1:5000"
        + (f"/#/experiments/{experiment_id}" if experiment_id else "")
        + "."
    )


# ----- studies started from this dashboard (embedded mode) ----------------------------------------
@dataclass
class LocalRun:
    name: str
    pid: int
    started: float
    spec: Path
    log: Path
    alive: bool
    returncode: int | None = None


_children: dict[int, subprocess.Popen] = {}  # this server's own children, polled so none is left a zombie


def submitted_dir() -> Path:
    return nas_home() / "submitted"


def _alive(pid: int) -> tuple[bool, int | None]:
    proc = _children.get(pid)
    if proc is not None:
        rc = proc.poll()
        return rc is None, rc
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        return True, None
    return True, None


def local_runs() -> list[LocalRun]:
    """The `nas run` processes this dashboard started (recorded under .nas/submitted/), newest first."""
    out = []
    folder = submitted_dir()
    if not folder.is_dir():
        return out
    for f in folder.glob("*.run.json"):
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        alive, rc = _alive(int(d["pid"]))
        out.append(
            LocalRun(
                d["name"],
                int(d["pid"]),
                float(d["started"]),
                Path(d["spec"]),
                Path(d["log"]),
                alive,
                rc if rc is not None else d.get("returncode"),
            )
        )
    return sorted(out, key=lambda r: -r.started)


def start_local(spec, text: str) -> LocalRun:
    """Start `nas run` on the spec as a detached process; its output goes to .nas/submitted/<name>.log."""
    running = next((r for r in local_runs() if r.name == spec.name and r.alive), None)
    if running is not None:
        raise ConfigError(
            f"study {spec.name!r} is already running from this dashboard (process {running.pid}); "
            "stop it on the Studies page or wait for it to finish"
        )
    folder = submitted_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path, log = folder / f"{spec.name}.yaml", folder / f"{spec.name}.log"
    path.write_text(text if text.endswith("\n") else text + "\n")
    env = {
        **os.environ,
        "NAS_STORAGE": storage_url(),
        "NAS_TRACKING": tracking_url(),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "ab") as out:
        out.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')}: nas run {path}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nas.cli", "run", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    run = LocalRun(spec.name, proc.pid, time.time(), path, log, True)
    (folder / f"{spec.name}.run.json").write_text(
        json.dumps(
            {"name": run.name, "pid": run.pid, "started": run.started, "spec": str(path), "log": str(log)}
        )
    )
    return run


def stop_local(run: LocalRun) -> None:
    """Ask a local run to stop as Ctrl-C would: it records what finished and can be resumed with `nas run`."""
    if run.alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGINT)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 20000))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
