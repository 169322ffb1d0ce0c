"""Study: the Pareto front, its architectures' layer patterns, the trials, learning curves, the hypervolume
history, parallel coordinates and slices over the search parameters, importances."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import analysis, common, figures
from nas import reader
from nas.spec import metric_direction

STRIP_ROWS = 60  # architectures drawn in the strip picture (the front of a 3-objective study can be large)
CURVE_DEFAULT = 5
# lines of the parallel coordinates and points of each slice: beyond, a sample (the front always in it);
# more lines draw slowly in the browser and show no more
PARALLEL_LINES = 2000
SLICE_POINTS = 3000


def metric_options(meta, df: pd.DataFrame) -> dict[str, str]:
    """Axis choices: label -> column (the objectives first, then every other recorded metric)."""
    out = {m: m for m in meta.metrics}
    for c in df.columns:
        if c.startswith("m.") and c[2:] not in out:
            out[c[2:]] = c
    return out


def header(meta, df: pd.DataFrame, row: dict | None) -> None:
    counts = df["status"].value_counts()
    status = row["status"] if row else "–"
    st.markdown(
        f"**{meta.kind}** study · status **{status}** · {len(df):,} trials"
        + (f" · {meta.spec.get('description', '').strip()}" if meta.spec.get("description") else "")
    )
    cells = [
        ("complete", int(counts.get("complete", 0))),
        ("running", int(counts.get("running", 0)) + int(counts.get("paused", 0))),
        ("failed", int(counts.get("failed", 0))),
        ("infeasible", int(counts.get("infeasible", 0))),
    ]
    if counts.get("pruned", 0):
        cells.append(("pruned", int(counts["pruned"])))
    if counts.get("interrupted", 0):
        cells.append(("interrupted", int(counts["interrupted"])))
    if row:
        cells.append(("elapsed", common.hms(row["elapsed"]) or "0:00"))
        if row.get("eta") is not None and row["eta"] == row["eta"]:
            cells.append(("ETA", common.hms(row["eta"])))
    for col, (label, value) in zip(st.columns(len(cells)), cells, strict=False):
        col.metric(label, value)
    if row and isinstance(row.get("waiting_for"), str):
        st.warning(row["waiting_for"], icon=":material/hourglass_top:")
    if status == "interrupted":
        st.info(
            f"Interrupted with {int(counts.get('interrupted', 0))} trial(s) in flight: `nas run` with the study's "
            "spec goes on from where they were.",
            icon=":material/motion_photos_paused:",
        )
    best = (row or {}).get("best") or {}
    if best:
        st.markdown(
            "Best so far: "
            + common.best_text(best, meta.directions, meta.metrics)
            + "  (each objective on its own)"
        )


def pareto_section(meta, df: pd.DataFrame, name: str) -> list[int]:
    """The front plot; returns the trial numbers selected in it (box, lasso or click)."""
    done = df[df["status"] == "complete"]
    st.subheader("Pareto front")
    if done.empty:
        st.info("No complete trial yet: the front appears with the first one.")
        return []
    options = metric_options(meta, df)
    labels = list(options)
    c1, c2, c3 = st.columns([2, 2, 3])
    x = c1.selectbox("x axis", labels, index=0, key="pareto_x")
    y = c2.selectbox("y axis", labels, index=1 if len(labels) > 1 else 0, key="pareto_y")
    color = (
        c3.segmented_control(
            "colour the front by", ["SSM family", "attention share"], default="SSM family", key="pareto_color"
        )
        or "SSM family"
    )
    directions = dict(zip(meta.metrics, meta.directions, strict=False))
    for label in (x, y):  # metrics that are not objectives still have a better direction
        if label not in directions:
            try:
                directions[label] = metric_direction(label)
            except KeyError:
                directions[label] = ""
    fig = figures.pareto_figure(
        done,
        options[x],
        options[y],
        directions=directions,
        color="attn_ratio" if color == "attention share" else "family",
        objectives=meta.metrics,
        uirevision=name,
    )
    event = st.plotly_chart(
        fig,
        key="pareto",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config={"displaylogo": False},
    )
    n_front = int(done["pareto"].sum())
    other = len(df) - len(done)
    st.caption(
        f"{n_front} of {len(done):,} complete trials are on the Pareto front of "
        f"{' and '.join(meta.metrics)}"
        + (" (all three objectives: some look dominated in two)" if len(meta.metrics) > 2 else "")
        + f"; dominated trials in grey. {other:,} trials without values (running, failed, infeasible) "
        "are not "
        "drawn. Select points (click, box or lasso) to see their learning curves below."
    )
    picked = []
    if event is not None and getattr(event, "selection", None):
        for p in event.selection.get("points", []):
            cd = p.get("customdata")
            if cd is not None and cd != []:
                picked.append(int(cd[0] if isinstance(cd, (list, tuple)) else cd))
    return sorted(set(picked))


def strips_section(meta, df: pd.DataFrame) -> None:
    front = df[df["pareto"] & df["pattern"].notna()]
    st.subheader("Layer patterns of the Pareto architectures")
    if front.empty:
        st.caption("No architecture on the front yet.")
        return
    first, d0 = meta.metrics[0], meta.directions[0]
    front = front.sort_values(first, ascending=d0 != "maximize")
    rows = list(zip(front["number"].tolist(), front["pattern"].tolist(), strict=False))
    st.plotly_chart(figures.strip_figure(rows[:STRIP_ROWS]), key="strips", config={"displaylogo": False})
    note = (
        f"ordered by {first}, best first; one cell per sublayer, from the embedding (left) to the head."
    )
    if len(rows) > STRIP_ROWS:
        note += f" The first {STRIP_ROWS} of {len(rows)} shown."
    st.caption(note)


def trials_tab(meta, df: pd.DataFrame) -> None:
    present = [
        s
        for s in ("complete", "running", "paused", "interrupted", "failed", "infeasible", "pruned", "waiting")
        if (df["status"] == s).any()
    ]
    c1, c2, c3, c4 = st.columns([3, 2, 2, 1.3], vertical_alignment="bottom")
    status = c1.multiselect("status", present, default=present, key="f_status")
    families = sorted(df["family"].dropna().unique().tolist())
    fam = c2.multiselect(
        "SSM family",
        families,
        default=families,
        key="f_family",
        format_func=lambda f: figures.FAMILY_LABELS.get(f, f),
    )
    text = c3.text_input("pattern contains", key="f_pattern", placeholder="e.g. M*M or XE")
    front_only = c4.toggle("Pareto only", key="f_pareto")
    view = df[df["status"].isin(status) & df["family"].isin(fam)]
    if text:
        view = view[view["pattern"].fillna("").str.contains(text, regex=False)]
    if front_only:
        view = view[view["pareto"]]
    c5, c6, _ = st.columns([2, 2, 4])
    orders = ["Pareto first", *meta.metrics, "trial number", "newest first"]
    order = c5.selectbox("sort by", orders, key="f_sort")
    limit = c6.selectbox(
        "rows",
        [200, 1000, 5000, "all"],
        index=0,
        key="f_rows",
        help="the table sends these rows to the browser; filter or sort to reach the others",
    )
    first, d0 = meta.metrics[0], meta.directions[0]
    if order == "Pareto first":
        view = view.sort_values(["pareto", first], ascending=[False, d0 != "maximize"], na_position="last")
    elif order in meta.metrics:
        d = dict(zip(meta.metrics, meta.directions, strict=False))[order]
        view = view.sort_values(order, ascending=d != "maximize", na_position="last")
    elif order == "newest first":
        view = view.sort_values("number", ascending=False)
    matching = len(view)
    if limit != "all":
        view = view.head(int(limit))
    params = [c for c in df.columns if c.startswith("p.")]
    shown_metrics = [
        m for m in ("params", "lm_loss", "kv_state_bytes") if f"m.{m}" in df.columns and m not in meta.metrics
    ]
    tracking = common.study_tracking(meta.spec)
    table = pd.DataFrame(
        {
            "trial": view["number"],
            "status": view["status"],
            "Pareto": view["pareto"],
            "pattern": view["pattern"],
        }
    )
    for m in meta.metrics:
        table[m] = view[m]
    shown = analysis.shown_params(view, [p[2:] for p in params])
    applied = set(_params(meta, df))
    for p in params:
        # "–": the trial carries a value, but its architecture has nothing it applies to (`ssm` of an
        # all-attention model, a sampled d_model the parameter budget overrode); blank: no value at all
        took = shown[p[2:]].notna() & (p[2:] in applied)
        table[p[2:]] = view[p].astype(str).where(took, analysis.MISSING).where(view[p].notna(), "")
    for m in shown_metrics:
        table[m] = view[f"m.{m}"]
    table["duration"] = [common.hms(d) for d in view["duration"]]
    table["failure"] = view["failure_reason"].fillna("")
    config: dict = {
        "Pareto": st.column_config.CheckboxColumn(width="small"),
        "pattern": st.column_config.TextColumn(width="medium"),
    }
    links = [common.run_link(tracking, meta.experiment_id, r) for r in view["mlflow_run_id"]]
    if any(links):
        table["MLflow"] = links
        config["MLflow"] = st.column_config.LinkColumn("MLflow", display_text="open run")
    else:
        table["MLflow run"] = view["mlflow_run_id"].fillna("")
    st.dataframe(table, hide_index=True, column_config=config, height=420, key="trials_table")
    st.caption(f"{len(view):,} rows shown; {matching:,} of {len(df):,} trials match the filters.")
    if not any(links) and view["mlflow_run_id"].notna().any():
        st.caption(common.local_mlflow_hint(tracking, meta.experiment_id))
    fails = df[df["status"].isin(["failed", "infeasible"])]
    if len(fails):
        with st.expander(f"Why trials failed ({len(fails):,})"):
            why = (
                fails.assign(
                    kind=fails["failure_kind"].fillna("error"),
                    reason=fails["failure_reason"].fillna("").str.slice(0, 160),
                )
                .groupby(["kind", "reason"])
                .size()
                .rename("trials")
                .reset_index()
                .sort_values("trials", ascending=False)
                .head(30)
            )
            st.dataframe(why, hide_index=True)


def curves_tab(url: str, name: str, meta, df: pd.DataFrame, version: tuple, picked: list[int]) -> None:
    candidates = df[df["status"].isin(["complete", "failed", "pruned", "paused"]) & df["pattern"].notna()]
    if candidates.empty:
        st.info("No trial has trained yet.")
        return
    first, d0 = meta.metrics[0], meta.directions[0]
    front = candidates[candidates["pareto"]].sort_values(first, ascending=d0 != "maximize")
    default = (
        picked or front["number"].tolist()[:CURVE_DEFAULT] or candidates["number"].tolist()[-CURVE_DEFAULT:]
    )
    options = candidates["number"].tolist()
    numbers = st.multiselect(
        "trials",
        options,
        default=[n for n in default if n in set(options)],
        key="curve_trials",
        help="the Pareto trials by default, or the points selected in the front above",
    )
    if not numbers:
        st.caption("Choose trials to compare their training curves.")
        return
    tracking = common.study_tracking(meta.spec)
    curves = {n: common.curves(url, name, int(n), version, tracking) for n in numbers}
    tasks = sorted({t for c in curves.values() for t in c}, key=lambda t: (t != "lm", t))
    if not tasks:
        st.info("These trials recorded no training curves.")
        return
    task = st.segmented_control("task", tasks, default=tasks[0], key="curve_task") or tasks[0]
    patterns = dict(zip(df["number"], df["pattern"], strict=False))
    labels = {n: f"trial {n} {patterns.get(n) or ''}"[:48] for n in numbers}
    st.plotly_chart(
        figures.curves_figure(curves, task, labels=labels, x="step"),
        key="curves",
        config={"displaylogo": False},
    )


def _directions(meta) -> dict[str, str]:
    return dict(zip(meta.metrics, meta.directions, strict=False))


def _complete(df: pd.DataFrame, meta) -> pd.DataFrame:
    done = df[df["status"] == "complete"]
    return done[done[meta.metrics].notna().all(axis=1)]


def _params(meta, df: pd.DataFrame) -> list[str]:
    # with a parameter budget the width is solved per trial, so a sampled d_model never took effect
    solved = bool((meta.spec.get("constraints") or {}).get("params"))
    return analysis.search_params(df, solved_width=solved)


def history_tab(url: str, name: str, meta, df: pd.DataFrame, version: tuple) -> None:
    multi = len(meta.metrics) > 1
    n_done = len(_complete(df, meta))
    if n_done < (2 if multi else 1):
        st.info(
            ("The hypervolume history needs two complete trials" if multi else "The history needs a complete trial")
            + f"; this study has {n_done}."
        )
        return
    history = common.history(url, name, version)
    x = st.segmented_control("x axis", ["time", "complete trials"], default="time", key="history_x") or "time"
    if multi:
        fig = figures.hypervolume_figure(history, x=x)
        sampled = f" (evaluated at {len(history)} evenly spaced completions)" if len(history) < n_done else ""
        st.plotly_chart(fig, key="hypervolume", config={"displaylogo": False})
        st.caption(
            f"Hypervolume of the Pareto front of {' and '.join(meta.metrics)} after each completion{sampled}: "
            "the share of the objective box that the front dominates, where each objective is scaled so "
            "that its best value among the complete trials is 1 and the reference point (its worst value, "
            f"{analysis.REFERENCE_MARGIN:.0%} of its range further) is 0. It grows when a trial joins the "
            "front and stays flat while the search finds nothing better; the box is redrawn as trials "
            "arrive, so compare shapes rather than values between visits."
        )
    else:
        metric, direction = meta.metrics[0], meta.directions[0]
        st.plotly_chart(figures.history_figure(history, metric, direction, x=x), key="history",
                        config={"displaylogo": False})
        st.caption(f"Each complete trial's {metric} and the best so far, in order of completion.")


def _no_param_views(done: pd.DataFrame, params: list[str], least: int, needs: str) -> bool:
    """A sentence instead of an empty chart; True when it was written."""
    if len(done) < least:
        st.info(f"{needs} at least {least} complete trial{'s' if least > 1 else ''}; this study has {len(done)}.")
        return True
    if not params:
        st.info("This study samples no search parameters (its space has only fixed values), so there is "
                "nothing to plot against.")
        return True
    return False


def _sample_note(done: pd.DataFrame, sample: pd.DataFrame, what: str) -> str:
    if len(sample) == len(done):
        return f"{len(done):,} complete trials."
    return (
        f"{len(sample):,} of {len(done):,} complete trials: every one on the Pareto front and an even "
        f"random sample of the others ({what} show no more)."
    )


def parallel_tab(url: str, name: str, meta, df: pd.DataFrame, version: tuple) -> None:
    done, params = _complete(df, meta), _params(meta, df)
    if _no_param_views(done, params, 2, "Parallel coordinates need"):
        return
    color = st.segmented_control("colour by", meta.metrics, default=meta.metrics[0], key="parallel_color")
    sample = analysis.thin(done, PARALLEL_LINES)
    fig = figures.parallel_figure(
        sample,
        analysis.shown_params(sample, params),
        meta.metrics,
        color=color or meta.metrics[0],
        directions=_directions(meta),
        choices=common.choices(url, name, version),
    )
    st.plotly_chart(fig, key="parallel", config={"displaylogo": False})
    st.caption(
        "One line per trial through every search parameter and then the objectives; drag along an axis to "
        f"keep only the lines that cross it there. {_sample_note(done, sample, 'more lines')} "
        f"`{analysis.MISSING}`: the parameter did not apply to that architecture (the SSM family of an "
        "all-attention model, attention's placement in a pure SSM)."
    )


def slices_tab(url: str, name: str, meta, df: pd.DataFrame, version: tuple) -> None:
    done, params = _complete(df, meta), _params(meta, df)
    if _no_param_views(done, params, 1, "The slice plot needs"):
        return
    metric = st.segmented_control("objective", meta.metrics, default=meta.metrics[0], key="slice_metric")
    sample = analysis.thin(done, SLICE_POINTS)
    fig = figures.slice_figure(
        sample,
        analysis.shown_params(sample, params),
        metric or meta.metrics[0],
        directions=_directions(meta),
        choices=common.choices(url, name, version),
    )
    st.plotly_chart(fig, key="slices", config={"displaylogo": False})
    st.caption(
        "The objective against each search parameter, one point per trial, darker for later trials; "
        f"a categorical parameter's points are spread around its tick. {_sample_note(done, sample, 'more points')}"
    )


def importance_tab(url: str, name: str, meta, version: tuple) -> None:
    choices: dict[str, int | None] = {}
    if len(meta.metrics) > 1:
        choices["reaching the Pareto front"] = None
    for i, m in enumerate(meta.metrics):
        choices[m] = i
    label = st.segmented_control(
        "importance for", list(choices), default=next(iter(choices)), key="imp_target"
    ) or next(iter(choices))
    result = common.importances(url, name, version, choices[label])
    if isinstance(result, str):
        st.info(result)
        return
    st.plotly_chart(figures.importance_figure(result), key="importances", config={"displaylogo": False})
    st.caption(
        f"PED-ANOVA (`optuna.importance`) over the complete trials (a sample of {common.IMPORTANCE_SAMPLE:,} "
        "when there are more): how much each search parameter decides whether a trial lands in the top "
        "10% " + ("of the front" if choices[label] is None else f"by {label}") + "."
    )


def running_tab(url: str, name: str) -> None:
    run = reader.running_trials(url, name)
    if run.empty:
        st.info("No trial is running.")
        return
    now = time.time()
    table = pd.DataFrame(
        {
            "trial": run["number"],
            "status": run["status"],
            "pattern": run["pattern"],
            "task": run["task"],
            "progress": [
                (s / n) if s is not None and n else None
                for s, n in zip(run["step"], run["steps"], strict=False)
            ],
            "step": [
                f"{s}/{n}" if s is not None else "" for s, n in zip(run["step"], run["steps"], strict=False)
            ],
            "loss": run["loss"],
            "updated": [
                f"{common.hms(now - u)} ago" if u == u and u is not None else "" for u in run["updated"]
            ],
            "running for": [common.hms(now - s) if s == s and s is not None else "" for s in run["started"]],
            "note": [w if isinstance(w, str) else "" for w in run["waiting_for"]],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        key="running_table",
        column_config={
            "progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")
        },
    )


def fidelity_section(url: str, name: str, meta, version: tuple) -> None:
    """A fidelity study: does its source study's ranking hold at this larger size?"""
    source = meta.spec["fidelity"]["source"]
    st.subheader(f"Fidelity: {source}'s trials re-trained here")
    rows = common.fidelity(url, name, version)
    if not any(r.pairs for r in rows):
        st.info("No re-training has finished yet.")
        return
    st.plotly_chart(figures.fidelity_figure(rows, _directions(meta), source, name), key="fidelity",
                    config={"displaylogo": False})
    st.caption("Spearman's ρ between the two sizes, per objective, with a bootstrap 95% interval: 1 means "
               f"the larger models rank exactly as {source}'s proxies did.")
    every = common.fidelity(url, name, version, ("all",))
    if len(every) <= len(rows):
        return
    with st.expander("Every quality metric's rank correlation (each recall task's too)"):
        table = pd.DataFrame({
            "metric": [r.metric for r in every],
            "pairs": [r.pairs for r in every],
            "Spearman ρ": [r.rho for r in every],
            "95% from": [r.low for r in every],
            "95% to": [r.high for r in every],
        })
        st.dataframe(table, hide_index=True, key="fidelity_all", column_config={
            c: st.column_config.NumberColumn(format="%+.2f") for c in ("Spearman ρ", "95% from", "95% to")})
        st.caption("Which scores keep their ranking at the larger size. A task at chance or saturated at either "
                   "size ranks by noise (ρ near 0, or none where every value is the same).")


def seeds_section(url: str, name: str, df: pd.DataFrame, version: tuple) -> None:
    """Where trials trained several seeds: how far each score moves between them (`nas seeds`)."""
    several = any(c.startswith("sd.") for c in df.columns)  # a trial's spread over its seeds
    if not several and not ("p.seed" in df and df["p.seed"].nunique() > 1):  # or an ablation's seeds
        return  # one seed: nothing to read again
    noise = common.seed_noise(url, name, version)
    if noise.empty:
        return
    first = noise.iloc[0]
    with st.expander(f"Seed noise: {first['archs']} architectures, up to {first['seeds']} seeds each"):
        table = pd.DataFrame({
            "metric": noise["metric"],
            "architectures": noise["archs"],
            "mean": noise["mean"],
            "sd over seeds": noise["sd"],
            "sd ÷ value": noise["rel_sd"],
            "separation": noise["separation"],
            "Kendall τ": noise["tau"],
            "τ, lowest pair": noise["tau_min"],
        })
        st.dataframe(table, hide_index=True, key="seed_noise", column_config={
            "mean": st.column_config.NumberColumn(format="%.4g"),
            "sd over seeds": st.column_config.NumberColumn(format="%.2g"),
            "sd ÷ value": st.column_config.NumberColumn(format="percent"),
            "separation": st.column_config.NumberColumn(format="%.1f"),
            "Kendall τ": st.column_config.NumberColumn(format="%+.2f"),
            "τ, lowest pair": st.column_config.NumberColumn(format="%+.2f"),
        })
        st.caption("sd: the median over architectures of the standard deviation over their seeds. Separation: "
                   "the spread of the architectures' means over that noise; below ~1 a ranking by the metric is "
                   "mostly luck. Kendall τ: how alike two seeds rank the architectures (1: the same order).")


def body(url: str, name: str) -> bool:
    version, meta, df = common.study_frame(url, name)
    rows = common.studies(url)
    row = next(iter(rows[rows["name"] == name].to_dict("records")), None)
    header(meta, df, row)
    if meta.kind == "fidelity":
        fidelity_section(url, name, meta, version)
    picked = pareto_section(meta, df, name)
    seeds_section(url, name, df, version)
    strips_section(meta, df)
    n_running = int(df["status"].isin(["running", "paused", "interrupted"]).sum())
    history = "Hypervolume" if len(meta.metrics) > 1 else "History"
    tabs = ["Trials", "Learning curves", history, "Parallel coordinates", "Slices", "Parameter importances",
            "Running"]
    t_trials, t_curves, t_hist, t_par, t_slice, t_imp, t_run = st.tabs(tabs, key="tab", bind="query-params")
    with t_trials:
        if t_trials.open:
            trials_tab(meta, df)
    with t_curves:
        if t_curves.open:
            curves_tab(url, name, meta, df, version, picked)
    with t_hist:
        if t_hist.open:
            history_tab(url, name, meta, df, version)
    with t_par:
        if t_par.open:
            parallel_tab(url, name, meta, df, version)
    with t_slice:
        if t_slice.open:
            slices_tab(url, name, meta, df, version)
    with t_imp:
        if t_imp.open:
            importance_tab(url, name, meta, version)
    with t_run:
        if t_run.open:
            running_tab(url, name)
    if n_running:
        st.caption(
            f"{n_running} trial{'s' if n_running != 1 else ''} in flight "
            "(the Running tab has their progress)."
        )
    return bool(row and row["status"] == "running")


st.title("Study")
URL = common.storage_url()
names = reader.study_names(URL)
if not names:
    st.info(f"No studies yet in `{common.shown(URL)}`. Start one with `nas run my-study.yaml`, "
            "or on the Submit page.")
    st.stop()
NAME = common.pick_study(names)
_listed = common.studies(URL)
_row = _listed[_listed["name"] == NAME]
ACTIVE = bool((_row["status"] == "running").any())
# a big study redraws thousands of points on each refresh: less often
_size = int(_row[["complete", "failed", "infeasible", "pruned", "running"]].to_numpy().sum())
interval = (common.REFRESH_STUDY * (3 if _size > 2000 else 1)
            if ACTIVE and st.session_state.get("auto_refresh", True) else None)


@st.fragment(run_every=interval)
def live() -> None:
    if body(URL, NAME) != ACTIVE:
        st.rerun()  # the study started or stopped: refresh on the new schedule


live()
