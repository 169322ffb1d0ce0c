"""The dashboard's plotly figures, built from `nas.reader` frames; no Streamlit here.

pareto_figure(trials, "synthetic_accuracy", "decode_tps", directions={...})   # the front, others greyed
strip_figure([(12, "M-M*-M-M-"), (40, "M*M*-")])                            # one row per architecture
curves_figure({12: {"lm": [(step, tokens, loss), ...]}}, "lm")
importance_figure({"attn_ratio": 0.6, "ssm": 0.3})
ablation_figure(report, "lm_loss")
hypervolume_figure(analysis.hypervolume_history(...))                       # the front's growth
history_figure(analysis.best_so_far(...), "lm_loss", "minimize")            # one objective's best so far
parallel_figure(complete, shown, ["synthetic_accuracy", "decode_tps"], color="synthetic_accuracy", ...)
slice_figure(complete, shown, "synthetic_accuracy", directions={...})       # the objective against each parameter
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from search_spaces.pattern import SYMBOLS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

__all__ = [
    "FAMILY_COLORS",
    "SYMBOL_COLORS",
    "ablation_figure",
    "axis_label",
    "curves_figure",
    "history_figure",
    "hypervolume_figure",
    "importance_figure",
    "parallel_figure",
    "pareto_figure",
    "progress_figure",
    "slice_figure",
    "strip_figure",
]

# one colour per sublayer symbol, the same in every figure
SYMBOL_COLORS: dict[str, str] = {
    "*": "#d62728",  # attention
    "M": "#1f77b4",  # Mamba-2
    "m": "#17becf",  # Mamba-1
    "X": "#9467bd",  # mLSTM
    "D": "#2ca02c",  # Gated DeltaNet / KDA
    "C": "#bcbd22",  # gated short convolution
    "W": "#e377c2",  # sliding-window attention
    "-": "#c7c7c7",  # dense MLP
    "E": "#ff7f0e",  # MoE
}
FAMILY_COLORS: dict[str, str] = {
    "Mamba-2": SYMBOL_COLORS["M"],
    "Mamba-1": SYMBOL_COLORS["m"],
    "mLSTM": SYMBOL_COLORS["X"],
    "Gated DeltaNet": SYMBOL_COLORS["D"],
    "short conv": SYMBOL_COLORS["C"],
    "none": SYMBOL_COLORS["*"],
    "mixed": "#8c564b",
    "unknown": "#7f7f7f",
}
FAMILY_LABELS = {"none": "attention only", "mixed": "mixed SSMs"}
DOMINATED = "#b8b8b8"
# up to this many dominated trials carry their parameters and metrics in the hover too (beyond, the page
# would send megabytes of hover text: they show their pattern and the two values)
FULL_HOVER = 2000
# metrics worth a line in a trial's hover (besides the axes), in this order
HOVER_METRICS = (
    "params",
    "synthetic_accuracy",
    "lm_loss",
    "decode_tps",
    "prefill_tps",
    "kv_state_bytes",
    "train_tps",
)


def axis_label(metric: str, directions: dict[str, str]) -> str:
    d = directions.get(metric)
    return f"{metric} {'↑' if d == 'maximize' else '↓' if d == 'minimize' else ''}".strip()


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        a = abs(v)
        if a >= 1e6:
            return f"{v:.3g}"
        return f"{v:,.0f}" if a >= 1000 else f"{v:.4g}"
    return str(v)


def _hover_lines(df: pd.DataFrame, params: list[str], metrics: list[str]) -> list[str]:
    """Per trial: its search parameters (those that applied to its architecture) and a few metrics, as
    hover lines ('<br>'-separated)."""
    from dashboard.analysis import shown_params

    shown = shown_params(df, params)
    pcols = [shown[p].tolist() for p in params]
    mcols = [df[f"m.{m}"].tolist() for m in metrics]
    out = []
    for i in range(len(df)):
        ps = ", ".join(f"{p}={c[i]}" for p, c in zip(params, pcols, strict=False) if c[i] is not None)
        ms = " · ".join(f"{m} {_num(c[i])}" for m, c in zip(metrics, mcols, strict=False) if not _isnan(c[i]))
        out.append("<br>".join(x for x in (ps, ms) if x))
    return out


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _log_axis(values) -> bool:
    """Log scale for a positive metric spread over more than two decades (throughputs, bytes)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(len(v) and v.min() > 0 and v.max() / v.min() > 100)


def _error_bars(part: pd.DataFrame, col: str) -> dict | None:
    """Error bars of ± the standard deviation over seeds of column `col`'s metric, where trials have it."""
    sd = f"sd.{col.removeprefix('m.')}"
    if sd not in part.columns or part[sd].isna().all():
        return None
    return {"type": "data", "array": part[sd].fillna(0).to_numpy(), "visible": True, "thickness": 1,
            "width": 3, "color": "#444"}


def pareto_figure(
    trials: pd.DataFrame,
    x: str,
    y: str,
    *,
    directions: dict[str, str],
    color: str = "family",
    objectives: list[str] | None = None,
    uirevision: str = "study",
) -> go.Figure:
    """Every complete trial at (x, y): the study's Pareto front coloured, the dominated ones grey.

    `trials` is `nas.reader.study_frame`'s frame (complete rows); x and y name objective columns or
    `m.<metric>` columns. `color` is "family" (SSM family) or "attn_ratio" (attention's share).
    The front is over all of the study's objectives, so with three objectives some front points look
    dominated in a two-axis view. Where trials ran several seeds (`sd.<metric>` columns), the front's
    points carry error bars of ± the standard deviation over their seeds.
    """
    import numpy as np
    import plotly.graph_objects as go

    objectives = objectives or []
    params = sorted(c[2:] for c in trials.columns if c.startswith("p."))
    shown = {x.removeprefix("m."), y.removeprefix("m.")}
    metrics = [m for m in HOVER_METRICS if f"m.{m}" in trials.columns and m not in shown]
    fig = go.Figure()
    xl, yl = axis_label(x.removeprefix("m."), directions), axis_label(y.removeprefix("m."), directions)
    template = (
        f"<b>trial %{{customdata[0]}}</b>  %{{customdata[1]}}<br>{xl}: %{{x:.4g}}<br>{yl}: %{{y:.4g}}"
        "<br>%{customdata[2]}<extra></extra>"
    )

    def custom(part: pd.DataFrame):
        # an object array, not a list of tuples: plotly validates a list element by element (10x slower)
        data = np.empty((len(part), 3), dtype=object)
        data[:, 0] = part["number"].to_numpy()
        data[:, 1] = part["pattern"].fillna("").to_numpy(dtype=object)
        data[:, 2] = _hover_lines(part, params, metrics)
        return data

    dominated = trials[~trials["pareto"]]
    front = trials[trials["pareto"]]
    if len(dominated):
        grey = {"x": dominated[x].to_numpy(), "y": dominated[y].to_numpy(), "mode": "markers",
                "name": f"dominated ({len(dominated):,})",
                "marker": {"color": DOMINATED, "size": 5, "opacity": 0.45}}
        if len(dominated) <= FULL_HOVER:
            grey.update(customdata=custom(dominated), hovertemplate=template)
        else:  # thousands of points: the number (a binary array) and the pattern only, to keep the page light
            grey.update(customdata=dominated["number"].to_numpy(),
                        text=dominated["pattern"].fillna("").to_numpy(dtype=object),
                        hovertemplate=f"trial %{{customdata}}  %{{text}}<br>{xl}: %{{x:.4g}}"
                        f"<br>{yl}: %{{y:.4g}}<extra></extra>")
        fig.add_trace(go.Scattergl(**grey))
    if len(front) and len(objectives) == 2 and {x, y} == set(objectives):
        line = front.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=line[x],
                y=line[y],
                mode="lines",
                line={
                    "color": "#555",
                    "width": 1,
                    "dash": "dot",
                    "shape": "hv" if directions.get(y) == "maximize" else "vh",
                },
                hoverinfo="skip",
                showlegend=False,
            )
        )
    if color == "attn_ratio":
        fig.add_trace(
            go.Scatter(
                x=front[x],
                y=front[y],
                mode="markers",
                name=f"Pareto front ({len(front)})",
                marker={
                    "color": front["attn_ratio"],
                    "cmin": 0,
                    "cmax": 1,
                    "colorscale": "Viridis",
                    "size": 11,
                    "line": {"color": "#222", "width": 1},
                    "colorbar": {"title": {"text": "attention<br>share"}, "thickness": 14},
                },
                customdata=custom(front),
                hovertemplate=template,
                error_x=_error_bars(front, x),
                error_y=_error_bars(front, y),
            )
        )
    else:
        for fam, part in front.groupby("family", sort=True):
            fig.add_trace(
                go.Scatter(
                    x=part[x],
                    y=part[y],
                    mode="markers",
                    name=f"{FAMILY_LABELS.get(fam, fam)} ({len(part)})",
                    legendgroup="front",
                    legendgrouptitle={"text": "Pareto front by SSM family"},
                    marker={
                        "color": FAMILY_COLORS.get(fam, "#7f7f7f"),
                        "size": 11,
                        "line": {"color": "#222", "width": 1},
                    },
                    customdata=custom(part),
                    hovertemplate=template,
                    error_x=_error_bars(part, x),
                    error_y=_error_bars(part, y),
                )
            )
    fig.update_layout(
        xaxis_title=xl,
        yaxis_title=yl,
        height=480,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "v", "x": 1.02, "y": 1},
        uirevision=uirevision,
        hovermode="closest",
    )
    if _log_axis(trials[x]):
        fig.update_xaxes(type="log")
    if _log_axis(trials[y]):
        fig.update_yaxes(type="log")
    return fig


def progress_figure(times: dict[str, np.ndarray], *, height: int = 240) -> go.Figure:
    """Finished trials (complete, failed or pruned) against wall-clock time, one line per study."""
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, t in times.items():
        if not len(t):
            continue
        if len(t) > 2000:  # a long study: its curve at 2,000 evenly spaced counts is the same picture
            keep = np.unique(np.linspace(0, len(t) - 1, 2000).astype(np.int64))
            t, count = t[keep], keep + 1
        else:
            count = np.arange(1, len(t) + 1)
        fig.add_trace(go.Scatter(x=pd.to_datetime(t, unit="s", utc=True), y=count, mode="lines", name=name,
                                 line={"shape": "hv", "width": 2},
                                 hovertemplate=f"{name}<br>%{{x|%H:%M:%S}}: %{{y}} trials<extra></extra>"))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis={"title": "finished trials", "rangemode": "tozero"},
                      xaxis={"title": None}, legend={"orientation": "v"})
    return fig


def strip_figure(rows: list[tuple[int, str]], *, title: str | None = None) -> go.Figure:
    """One row per architecture, one coloured cell per sublayer, a legend by symbol."""
    import plotly.graph_objects as go

    symbols = list(SYMBOL_COLORS)
    width = max((len(p) for _, p in rows), default=1)
    z, text = [], []
    for number, pattern in rows:
        z.append(
            [symbols.index(ch) if ch in SYMBOL_COLORS else None for ch in pattern]
            + [None] * (width - len(pattern))
        )
        text.append(
            [f"trial {number} · sublayer {i}: {SYMBOLS[ch][1]} ({ch})" for i, ch in enumerate(pattern)]
            + [""] * (width - len(pattern))
        )
    n = len(symbols)
    # a stepwise scale: code k covers [k/n, (k+1)/n] in one flat colour
    scale = []
    for k, s in enumerate(symbols):
        scale += [[k / n, SYMBOL_COLORS[s]], [(k + 1) / n, SYMBOL_COLORS[s]]]
    labels = [f"trial {number}" for number, _ in rows]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(width)),
            y=labels,
            text=text,
            hoverinfo="text",
            colorscale=scale,
            zmin=-0.5,
            zmax=n - 0.5,
            showscale=False,
            xgap=1,
            ygap=3,
        )
    )
    present = {ch for _, p in rows for ch in p}
    for s in symbols:
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=f"{s}  {SYMBOLS[s][1]}",
                showlegend=True,
                marker={
                    "symbol": "square",
                    "size": 13,
                    "color": SYMBOL_COLORS[s],
                    "opacity": 1.0 if s in present else 0.35,
                },
            )
        )
    fig.update_layout(
        height=90 + 26 * max(1, len(rows)),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        title=title,
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        xaxis={"title": "sublayer", "showgrid": False, "zeroline": False, "dtick": 4 if width > 24 else 1},
        yaxis={"autorange": "reversed", "showgrid": False, "type": "category"},
        plot_bgcolor="white",
    )
    return fig


def curves_figure(
    curves: dict[int, dict[str, list]], task: str, *, labels: dict[int, str] | None = None, x: str = "tokens"
) -> go.Figure:
    """Training loss of `task` against tokens (or steps), one line per trial."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for number, by_task in curves.items():
        points = by_task.get(task) or []
        if not points:
            continue
        xs = [p[1] if x == "tokens" else p[0] for p in points]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[p[2] for p in points],
                mode="lines",
                name=(labels or {}).get(number, f"trial {number}"),
            )
        )
    fig.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title=x,
        yaxis_title=f"training loss ({task})",
        legend={"x": 1.02, "y": 1},
        hovermode="x unified",
    )
    return fig


def importance_figure(importances: dict[str, float]) -> go.Figure:
    import plotly.graph_objects as go

    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            marker_color="#1f77b4",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=80 + 28 * len(items),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="importance (sums to 1)",
    )
    return fig


def ablation_figure(report: pd.DataFrame, metric: str, *, what: str = "diff") -> go.Figure:
    """One panel per factor: each level's difference from the base level (or its mean), with 95% CIs.

    `report` has the columns of `nas.ablation.FactorLevel`; an interval that is infinite (one run)
    is drawn without a bar and said so in the hover.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = report[report["metric"] == metric]
    factors = list(dict.fromkeys(rows["factor"]))
    fig = make_subplots(
        rows=1, cols=max(1, len(factors)), shared_yaxes=True, subplot_titles=factors, horizontal_spacing=0.04
    )
    for i, factor in enumerate(factors, start=1):
        part = rows[rows["factor"] == factor]
        levels = [str(v) for v in part["level"]]
        if what == "diff":
            ys = [
                0.0 if b else (math.nan if d is None else d)
                for b, d in zip(part["is_base"], part["diff"], strict=False)
            ]
            errs = [
                0.0 if b else (math.nan if c is None else c)
                for b, c in zip(part["is_base"], part["diff_ci"], strict=False)
            ]
        else:
            ys, errs = part["mean"].tolist(), part["ci"].tolist()
        bars = [e if e is not None and math.isfinite(e) else 0.0 for e in errs]
        notes = [
            ("base level" if b else "")
            + ("" if e is not None and math.isfinite(e) else " (one run: no interval)")
            for b, e in zip(part["is_base"], errs, strict=False)
        ]
        colors = ["#555" if b else "#1f77b4" for b in part["is_base"]]
        fig.add_trace(
            go.Scatter(
                x=levels,
                y=ys,
                mode="markers",
                marker={"size": 12, "color": colors, "symbol": "diamond"},
                error_y={"type": "data", "array": bars, "visible": True, "thickness": 2, "width": 8},
                customdata=list(zip(part["n"], notes, strict=False)),
                showlegend=False,
                hovertemplate=f"{factor} = %{{x}}<br>{'Δ vs base' if what == 'diff' else 'mean'} %{{y:.4g}} "
                "± %{error_y.array:.3g}<br>runs %{customdata[0]} %{customdata[1]}<extra></extra>",
            ),
            row=1,
            col=i,
        )
        if what == "diff":
            fig.add_hline(y=0, line={"color": "#999", "dash": "dot", "width": 1}, row=1, col=i)
        fig.update_xaxes(type="category", row=1, col=i)
    fig.update_yaxes(
        title_text=f"{metric}: {'difference from the base level' if what == 'diff' else 'mean'}", row=1, col=1
    )
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


# ----- search history and parameters (the views optuna-dashboard users expect) -----------------------
def _history_x(history: pd.DataFrame, x: str):
    import pandas as pd

    if x == "time":
        return pd.to_datetime(history["completed"], unit="s", utc=True), None
    return history["trials"], "complete trials"


def hypervolume_figure(history: pd.DataFrame, *, x: str = "time") -> go.Figure:
    """The front's hypervolume (`analysis.hypervolume_history`) against completion time or the number
    of complete trials, as a step line (it only grows when a trial joins the front)."""
    import plotly.graph_objects as go

    xs, title = _history_x(history, x)
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=history["hypervolume"],
            mode="lines+markers" if len(history) < 60 else "lines",
            line={"shape": "hv", "width": 2, "color": "#1f77b4"},
            marker={"size": 5},
            customdata=history["trials"],
            hovertemplate="%{customdata} complete trials<br>hypervolume %{y:.4f}<extra></extra>",
            name="hypervolume",
        )
    )
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title=title,
        yaxis={"title": "hypervolume (share of the box)", "rangemode": "tozero"},
    )
    return fig


def history_figure(history: pd.DataFrame, metric: str, direction: str, *, x: str = "time") -> go.Figure:
    """One objective (`analysis.best_so_far`): each complete trial's value and the best so far."""
    import plotly.graph_objects as go

    xs, title = _history_x(history, x)
    label = axis_label(metric, {metric: direction})
    fig = go.Figure()
    fig.add_trace(
        go.Scattergl(
            x=xs,
            y=history["value"],
            mode="markers",
            name="trial",
            marker={"color": DOMINATED, "size": 5},
            customdata=history["number"],
            hovertemplate=f"trial %{{customdata}}<br>{metric} %{{y:.4g}}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=history["best"],
            mode="lines",
            name="best so far",
            line={"shape": "hv", "width": 2, "color": "#d62728"},
            hovertemplate=f"best {metric} %{{y:.4g}}<extra></extra>",
        )
    )
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title=title,
        yaxis_title=label,
        legend={"x": 1.02, "y": 1},
    )
    return fig


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _encode(values: list, choices: list | None = None) -> tuple[list[float], list[float], list[str]] | None:
    """A categorical axis: (positions, tick positions, tick labels), or None for a numeric one.

    Numbers with nothing missing keep their values; anything else (strings, booleans, or a number that
    did not apply to some trials, shown as "–" below the rest) becomes categories, in the search
    space's order when `choices` gives it.
    """
    present = [v for v in values if v is not None]
    if present and len(present) == len(values) and all(_is_number(v) for v in present):
        return None
    seen = list(dict.fromkeys(present))
    if choices:
        order = [c for c in choices if c in seen] + [v for v in seen if v not in choices]
    elif all(_is_number(v) for v in seen):
        order = sorted(seen)
    else:
        order = sorted(seen, key=str)
    from dashboard.analysis import MISSING

    labels = ([MISSING] if len(present) < len(values) else []) + [str(v) for v in order]
    offset = 1 if len(present) < len(values) else 0
    pos = {v: i + offset for i, v in enumerate(order)}
    return [0.0 if v is None else float(pos[v]) for v in values], list(map(float, range(len(labels)))), labels


def _ticks(values) -> str:
    """A d3 tick format: 12k for throughputs and byte counts, 0.85 for accuracies and losses."""
    import numpy as np

    v = np.abs(np.asarray(values, dtype=float))
    return ".3~s" if np.isfinite(v).any() and np.nanmax(v) >= 1e4 else ".3~g"


def _colorbar(metric: str, direction: str) -> dict:
    return {"title": {"text": axis_label(metric, {metric: direction})}, "thickness": 14}


def parallel_figure(
    trials: pd.DataFrame,
    shown: pd.DataFrame,
    objectives: list[str],
    *,
    color: str,
    directions: dict[str, str],
    choices: dict[str, list] | None = None,
) -> go.Figure:
    """One line per complete trial across every search parameter, then the objectives, coloured by
    the objective `color` (the better end of the scale always yellow).

    `shown` holds the parameters as `analysis.shown_params` gives them (None where one did not apply);
    categorical parameters get one tick per choice, in the search space's order where `choices` has it.
    """
    import plotly.graph_objects as go

    dims = []
    for p in shown.columns:
        values = shown[p].tolist()
        enc = _encode(values, (choices or {}).get(p))
        if enc is None:
            dims.append({"label": p, "values": [float(v) for v in values], "tickformat": _ticks(values)})
        else:
            pos, ticks, labels = enc
            dims.append({"label": p, "values": pos, "tickvals": ticks, "ticktext": labels,
                         "range": [-0.2, max(ticks) + 0.2] if ticks else None})
    for m in objectives:
        dims.append({"label": axis_label(m, directions), "values": trials[m].to_numpy(dtype=float),
                     "tickformat": _ticks(trials[m])})
    c = trials[color].to_numpy(dtype=float)
    fig = go.Figure(
        go.Parcoords(
            dimensions=[{k: v for k, v in d.items() if v is not None} for d in dims],
            line={
                "color": c,
                "colorscale": "Viridis",
                "reversescale": directions.get(color) == "minimize",
                "showscale": True,
                "colorbar": {**_colorbar(color, directions.get(color, "")), "x": 1.02, "xanchor": "left"},
            },
            labelangle=-20,
        )
    )
    fig.update_layout(height=460, margin={"l": 50, "r": 110, "t": 70, "b": 30})
    return fig


SLICE_COLUMNS = 3


def slice_figure(
    trials: pd.DataFrame,
    shown: pd.DataFrame,
    metric: str,
    *,
    directions: dict[str, str],
    choices: dict[str, list] | None = None,
) -> go.Figure:
    """`metric` against each search parameter, one panel per parameter, points coloured by trial number
    (how the search moved); a categorical parameter's points are spread a little around its tick."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    params = list(shown.columns)
    cols = min(SLICE_COLUMNS, max(1, len(params)))
    rows = max(1, math.ceil(len(params) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=params, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.5 / rows if rows > 1 else 0.1)
    y = trials[metric].to_numpy(dtype=float)
    numbers = trials["number"].to_numpy()
    patterns = trials["pattern"].fillna("").to_numpy(dtype=object) if "pattern" in trials else [""] * len(y)
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, len(y))
    label = axis_label(metric, directions)
    for i, p in enumerate(params):
        r, c = i // cols + 1, i % cols + 1
        values = shown[p].tolist()
        enc = _encode(values, (choices or {}).get(p))
        from dashboard.analysis import MISSING

        text = [MISSING if v is None else str(v) for v in values]
        if enc is None:
            xs = np.array(values, dtype=float)
        else:
            pos, ticks, labels = enc
            xs = np.array(pos) + jitter
            fig.update_xaxes(tickvals=ticks, ticktext=labels, range=[-0.5, len(labels) - 0.5], row=r, col=c)
        custom = np.empty((len(y), 3), dtype=object)
        custom[:, 0], custom[:, 1], custom[:, 2] = numbers, patterns, text
        fig.add_trace(
            go.Scattergl(
                x=xs,
                y=y,
                mode="markers",
                showlegend=False,
                marker={
                    "color": numbers,
                    "colorscale": "Blues",
                    "size": 6,
                    "line": {"color": "#444", "width": 0.5},
                    "showscale": i == 0,
                    "colorbar": {"title": {"text": "trial"}, "thickness": 14},
                },
                customdata=custom,
                hovertemplate=f"<b>trial %{{customdata[0]}}</b>  %{{customdata[1]}}<br>{p} = %{{customdata[2]}}"
                f"<br>{metric} %{{y:.4g}}<extra></extra>",
            ),
            row=r,
            col=c,
        )
        if enc is None and _log_axis(xs):
            fig.update_xaxes(type="log", row=r, col=c)
    for r in range(1, rows + 1):
        fig.update_yaxes(title_text=label, row=r, col=1)
    if _log_axis(y):
        fig.update_yaxes(type="log")
    fig.update_layout(height=80 + 260 * rows, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def fidelity_figure(rows: list, directions: dict[str, str], source: str, study: str) -> go.Figure:
    """One panel per objective: each re-trained architecture's value at the source study's size (x) against
    the larger size's (y), titled with Spearman's ρ and its bootstrap 95% interval (`nas.fidelity`); where the
    source trained several seeds, horizontal error bars of ± their standard deviation."""
    import math

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    def title(r) -> str:
        if not math.isfinite(r.rho):
            return f"{r.metric}: {r.pairs} pair(s), too few for ρ"
        return f"{r.metric}: ρ {r.rho:+.2f} [{r.low:+.2f}, {r.high:+.2f}], {r.pairs} pairs"

    fig = make_subplots(rows=1, cols=len(rows), subplot_titles=[title(r) for r in rows],
                        horizontal_spacing=0.12)
    for i, r in enumerate(rows, start=1):
        sd = {"error_x": {"type": "data", "array": [v or 0.0 for v in r.source_sd], "thickness": 1}} \
            if r.source_sd else {}
        fig.add_trace(
            go.Scatter(x=r.source, y=r.larger, customdata=r.trials, mode="markers", name=r.metric, showlegend=False,
                       **sd,
                       marker={"size": 10, "color": SYMBOL_COLORS["*"], "line": {"color": "#222", "width": 1}},
                       hovertemplate=f"trial %{{customdata}} of {source}<br>there: %{{x:.4g}}<br>here: %{{y:.4g}}"
                       "<extra></extra>"),
            row=1, col=i,
        )
        fig.update_xaxes(title_text=f"{axis_label(r.metric, directions)} in {source}", row=1, col=i)
        fig.update_yaxes(title_text=f"{axis_label(r.metric, directions)} here", row=1, col=i)
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig
