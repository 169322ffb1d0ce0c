"""Studies: every study with its status, progress, best so far, elapsed and ETA; refreshes itself."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import auth, common, figures

STATUS_ICONS = {
    "running": ":material/play_circle:",
    "starting": ":material/hourglass_top:",
    "queued": ":material/schedule:",
    "paused": ":material/pause_circle:",
    "interrupted": ":material/motion_photos_paused:",
    "stopped": ":material/stop_circle:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "empty": ":material/radio_button_unchecked:",
}


def given(v) -> bool:
    """Not None, NaN or empty (a merged frame fills the gaps with NaN)."""
    return v is not None and v == v and v != ""


def blank(name: str, **fields) -> dict:
    """A row for a study the storage does not hold yet (queued, or starting here)."""
    counts = ("complete", "running", "paused", "interrupted", "failed", "infeasible", "pruned", "waiting",
              "queued", "finished")
    return {"name": name, "kind": "", **dict.fromkeys(counts, 0), "budget": None, "best": {}, "elapsed": 0.0,
            "eta": None, "metrics": [], "directions": [], "priority": None, "submitted_by": None,
            "queue_id": None, "error": None, "pid": None, **fields}


def overview(df: pd.DataFrame, queued: list[dict], local: list[common.LocalRun], now: float) -> pd.DataFrame:
    """The Optuna studies merged by name with the queue's entries (service) or this dashboard's runs."""
    rows = {r["name"]: dict(r) for r in df.to_dict("records")}
    for r in rows.values():
        r.update(source="storage", priority=None, submitted_by=None, queue_id=None, error=None, pid=None)
    for q in queued:
        name = q.get("optuna_study_name") or q.get("name")
        row = rows.get(name)
        if row is None:
            spec = q.get("spec") or {}  # `list_studies` leaves it empty and reads these two of it
            budget = q.get("budget_trials") or (spec.get("budget") or {}).get("trials")
            kind = q.get("kind") or spec.get("kind", "search")
            row = rows[name] = blank(name, kind=kind, budget=budget, queued=budget or 0, source="queue")
        row.update(status=q.get("status") or row.get("status"), status_label=q.get("label"),
                   priority=q.get("priority"), submitted_by=q.get("submitted_by"), queue_id=q.get("id"),
                   error=q.get("error"))
    for run in local:
        row = rows.get(run.name)
        if row is None:
            if not run.alive and run.returncode in (0, None):
                continue
            error = None if run.alive else f"`nas run` exited with code {run.returncode}; see {run.log}"
            row = rows[run.name] = blank(run.name, elapsed=now - run.started, source="local", error=error,
                                         status="starting" if run.alive else "failed")
        elif run.alive and row.get("status") in ("stopped", "interrupted", "empty"):
            row["status"] = "starting"
        row["pid"] = run.pid if run.alive else row.get("pid")
    return pd.DataFrame(list(rows.values()))


def note(row: dict) -> str:
    """Why a study does not move: its trials wait for resources, or its run was interrupted."""
    if given(row.get("waiting_for")):
        return row["waiting_for"]
    if row.get("status") == "interrupted":
        n = int(row.get("interrupted") or 0)
        return f"interrupted with {n} trial(s) in flight; `nas run` with its spec resumes it"
    return ""


def table(view: pd.DataFrame, service: bool) -> pd.DataFrame:
    def progress(r) -> float | None:
        return min(1.0, r["finished"] / r["budget"]) if r.get("budget") else None

    out = pd.DataFrame(
        {
            "study": view["name"],
            "kind": view["kind"],
            "status": [
                lab if given(lab) else s
                for s, lab in zip(
                    view["status"],
                    view["status_label"] if "status_label" in view else view["status"],
                    strict=False,
                )
            ],
            "progress": [progress(r) for r in view.to_dict("records")],
            "best so far": [
                common.best_text(b or {}, d or [], m or [])
                for b, d, m in zip(view["best"], view["directions"], view["metrics"], strict=False)
            ],
            "finished": view["finished"].astype(int),
            "running": (view["running"] + view["paused"]).astype(int),
            "failed": view["failed"].astype(int),
            "queued": view["queued"].fillna(0).astype(int),
            "infeasible": view["infeasible"].astype(int),
            "budget": [("" if b is None or b != b else str(int(b))) for b in view["budget"]],
            "elapsed": [common.hms(e) for e in view["elapsed"]],
            "ETA": [common.hms(e) for e in view["eta"]],
            "note": [note(r) for r in view.to_dict("records")],
        }
    )
    if service:
        out["priority"] = view["priority"]
        out["submitted by"] = view["submitted_by"]
        out["queue id"] = view["queue_id"]
    return out


def actions(row: dict, m: common.Mode, local: dict[str, common.LocalRun]) -> None:
    name = row["name"]
    cols = st.columns(5)
    if row.get("source") != "queue" and row.get("status") != "starting":
        if cols[0].button("Open the Study page", icon=":material/scatter_plot:", key="open"):
            st.switch_page("views/study.py", query_params={"study": name})
        if row.get("kind") == "ablation" and cols[1].button("Ablation report", icon=":material/science:"):
            st.switch_page("views/ablation.py", query_params={"study": name})
        if row.get("complete") and cols[2].button("Export a trial", icon=":material/download:"):
            st.switch_page("views/export.py", query_params={"study": name})
    who = auth.actor(m.service)  # None: read-only, no action buttons
    if m.service and given(row.get("queue_id")):
        qid = int(row["queue_id"])
        status = row.get("status")
        if who is None and status in ("queued", "running", "paused"):
            cols[3].caption(":material/lock: sign in to pause, resume or cancel")
        try:
            if who and status in ("queued", "running") and cols[3].button("Pause", icon=":material/pause:"):
                m.queue.pause(qid, by=who)
                st.rerun()
            if who and status == "paused" and cols[3].button("Resume", icon=":material/play_arrow:"):
                m.queue.resume(qid, by=who)
                st.rerun()
            if who and status in ("queued", "running", "paused") and cols[4].button(
                "Cancel", icon=":material/cancel:"
            ):
                m.queue.cancel(qid, by=who)
                st.rerun()
        except Exception as e:
            st.error(str(e))
        if given(row.get("error")):
            st.error(row["error"])
    run = local.get(name)
    if (
        who
        and run is not None
        and run.alive
        and cols[4].button(
            "Stop", icon=":material/stop:", help="Like Ctrl-C: finished trials stay; `nas run` resumes"
        )
    ):
        common.stop_local(run)
        st.toast(f"asked {name} (process {run.pid}) to stop")


def body() -> None:
    url = common.storage_url()
    m = common.mode()
    df = common.studies(url)
    queued = common.queued_studies(m)
    local = [] if m.service else common.local_runs()
    now = time.time()
    view = overview(df, queued, local, now)
    if view.empty:
        st.info(
            f"No studies yet in `{common.shown(url)}`. Start one with `nas run my-study.yaml` or `nas demo` "
            "in a terminal, or paste a spec on the Submit page."
        )
        st.page_link("views/submit.py", label="Submit a study", icon=":material/upload_file:")
        return
    shown = table(view, m.service)
    event = st.dataframe(
        shown,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="studies_table",
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress",
                min_value=0.0,
                max_value=1.0,
                format="percent",
                width="small",
                help="finished trials of the budget",
            ),
            "kind": st.column_config.TextColumn(width="small"),
            "finished": st.column_config.NumberColumn(help="complete, failed and pruned trials"),
            "running": st.column_config.NumberColumn(help="trials in flight (or paused by early stopping)"),
            "queued": st.column_config.NumberColumn(help="trials of the budget not started yet"),
            "infeasible": st.column_config.NumberColumn(
                help="proposals that broke a constraint; never trained"
            ),
            "best so far": st.column_config.TextColumn(width="large", help="each objective on its own"),
            "note": st.column_config.TextColumn(
                width="large", help="why trials in flight have not started, or how to resume an interrupted study"
            ),
        },
    )
    picked = event.selection.rows if event is not None and hasattr(event, "selection") else []
    st.caption("Select a row for its actions, or open a study:")
    links = st.columns(min(6, len(view)) or 1)
    for i, row in enumerate(view.to_dict("records")):
        if row.get("source") in ("queue", "local") and not row.get("complete"):
            links[i % len(links)].markdown(f"{STATUS_ICONS.get(row['status'], '')} {row['name']}")
        else:
            links[i % len(links)].page_link(
                "views/study.py",
                label=row["name"],
                query_params={"study": row["name"]},
                icon=":material/scatter_plot:",
            )
    progress_chart(url, df)
    if len(df):  # read ahead the studies a click is most likely to open: running ones, then the latest
        common.prefetch(url, latest(df, common.PREFETCH))
    if picked:
        row = view.iloc[picked[0]].to_dict()
        st.subheader(row["name"])
        if given(row.get("description")):
            st.caption(row["description"])
        actions(row, m, {r.name: r for r in local})
    failed_queue = view[[given(e) for e in view["error"]]] if "error" in view else view.iloc[0:0]
    for r in failed_queue.to_dict("records"):
        st.warning(f"**{r['name']}**: {r['error']}")
    if local:
        with st.expander(
            f"Started from this dashboard ({sum(r.alive for r in local)} running)", expanded=False
        ):
            for r in local:
                state = (
                    "running"
                    if r.alive
                    else f"exited ({r.returncode})"
                    if r.returncode is not None
                    else "ended"
                )
                st.markdown(
                    f"**{r.name}** · process {r.pid} · {state} · started {common.hms(now - r.started)} ago "
                    f"· spec `{r.spec}` · log `{r.log}`"
                )
                st.code(common.log_tail(r.log, 12) or "(no output yet)", language=None)


def latest(df, n: int) -> list[str]:
    """The names of the n studies a user most likely looks at: running ones, then the most recently active."""
    ahead = df.assign(_running=df["status"].eq("running")).sort_values(
        ["_running", "last_activity"], ascending=False, na_position="last")
    return ahead["name"].head(n).tolist()


PROGRESS_STUDIES = 8


def progress_chart(url: str, df) -> None:
    """Finished trials over time for the most recently active studies."""
    names = latest(df, PROGRESS_STUDIES) if len(df) else []
    times = {n: t for n, t in common.finish_times(url, tuple(names)).items() if len(t)}
    if not times:
        return
    st.plotly_chart(figures.progress_figure(times), key="progress", config={"displaylogo": False})
    shown = f"the {len(times)} most recently active studies" if len(df) > PROGRESS_STUDIES else "each study"
    st.caption(f"Finished trials (complete, failed or pruned) over time, {shown}.")


def anything_running() -> bool:
    m = common.mode()
    listed = common.studies(common.storage_url())
    return (
        bool(listed["status"].eq("running").any())
        or any(q.get("status") in ("queued", "running") for q in common.queued_studies(m))
        or (not m.service and any(r.alive for r in common.local_runs()))
    )


st.title("Studies")
ACTIVE = anything_running()
# every few seconds while something runs; every half minute otherwise, to notice a study started elsewhere
interval = (
    (common.REFRESH_STUDIES if ACTIVE else 6 * common.REFRESH_STUDIES)
    if st.session_state.get("auto_refresh", True)
    else None
)


@st.fragment(run_every=interval)
def live() -> None:
    body()
    if anything_running() != ACTIVE:
        st.rerun()  # a new refresh interval


live()
