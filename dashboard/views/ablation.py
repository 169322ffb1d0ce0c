"""Ablation: each factor's effect on each metric with its 95% confidence interval, as plots and a table."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from dashboard import common, figures
from nas import reader


def ci_text(value: float | None, ci: float | None, signed: bool = False) -> str:
    if value is None or value != value:
        return ""
    v = f"{value:+.4g}" if signed else f"{value:.4g}"
    if ci is None or ci != ci:
        return v
    return f"{v} ± {ci:.2g}" if math.isfinite(ci) else f"{v} (one run: no interval)"


def report_table(report: pd.DataFrame) -> pd.DataFrame:
    def verdict(r) -> str:
        if r["is_base"]:
            return "base level"
        d, c = r["diff"], r["diff_ci"]
        if d is None or d != d or c is None or c != c or not math.isfinite(c):
            return ""
        return "differs from the base" if abs(d) > c else "within noise"

    return pd.DataFrame(
        {
            "factor": report["factor"],
            "level": report["level"].astype(str),
            "metric": report["metric"],
            "runs": report["n"],
            "mean ± 95% CI": [ci_text(m, c) for m, c in zip(report["mean"], report["ci"], strict=False)],
            "vs base ± 95% CI": [
                "base" if b else ci_text(d, c, signed=True)
                for b, d, c in zip(report["is_base"], report["diff"], report["diff_ci"], strict=False)
            ],
            "effect": [verdict(r) for r in report.to_dict("records")],
        }
    )


def body(url: str, name: str) -> bool:
    version, meta, df = common.study_frame(url, name)
    counts = df["status"].value_counts()
    done, total = int(counts.get("complete", 0)), len(df)
    ab = meta.spec.get("ablation") or {}
    base = ab.get("base")
    base_text = base if isinstance(base, str) else "an inline architecture"
    st.markdown(
        f"Base **{base_text}**, factors "
        + ", ".join(f"**{f}** ({', '.join(map(str, lv))})" for f, lv in (ab.get("factors") or {}).items())
        + f", {ab.get('seeds', 1)} seed(s) per cell · {done} of {total} runs complete"
        + (f", {int(counts.get('failed', 0))} failed" if counts.get("failed", 0) else "")
    )
    if done == 0:
        st.info("No run has finished yet; the effects appear as the cells complete.")
        return bool(counts.get("running", 0))
    try:
        report = common.ablation(url, name, version)
    except Exception as e:  # a report the study cannot give (e.g. its base preset was removed) is a message
        st.error(f"The report could not be computed: {e}")
        return False
    if report.empty:
        st.info("No factor level has a complete run yet.")
        return bool(counts.get("running", 0))
    what = (
        st.segmented_control(
            "show",
            ["difference from the base level", "level means"],
            default="difference from the base level",
            key="ablation_what",
        )
        or "difference from the base level"
    )
    for metric in dict.fromkeys(report["metric"]):
        d = dict(zip(meta.metrics, meta.directions, strict=False)).get(metric)
        st.markdown(
            f"**{metric}** {'(higher is better)' if d == 'maximize' else '(lower is better)' if d else ''}"
        )
        st.plotly_chart(
            figures.ablation_figure(report, metric, what="diff" if what.startswith("diff") else "mean"),
            key=f"ablation_{metric}",
            config={"displaylogo": False},
        )
    st.subheader("Table")
    st.dataframe(report_table(report), hide_index=True, key="ablation_table")
    st.caption(
        "Means over the runs of every cell at that level, with Student's t 95% intervals; the difference "
        "from the base's own level of the factor uses Welch's interval. An interval that excludes zero "
        "marks an effect larger than the seed noise."
    )
    return bool(counts.get("running", 0))


st.title("Ablation")
URL = common.storage_url()
names = reader.study_names(URL)
kinds = common.studies(URL)
ablations = [n for n in names if n in set(kinds[kinds["kind"] == "ablation"]["name"])]
if not ablations:
    st.info(
        "No ablation studies yet. An ablation spec has `kind: ablation` with a base, factors and seeds; "
        "submit one on the Submit page or with `nas run`."
    )
    st.stop()
NAME = common.pick_study(ablations, label="Ablation study")
row = next(iter(kinds[kinds["name"] == NAME].to_dict("records")), {})
interval = (
    common.REFRESH_STUDY
    if row.get("status") == "running" and st.session_state.get("auto_refresh", True)
    else None
)


@st.fragment(run_every=interval)
def live() -> None:
    body(URL, NAME)


live()
