"""The dashboard's figures from small frames, and `nas dashboard`'s refusals (no browser, no studies)."""

from __future__ import annotations

import math
import socket
import subprocess
import sys

import pandas as pd
import pytest

from dashboard import figures


def frame() -> pd.DataFrame:
    rows = [  # number, pattern, family, attention share, the two objectives, on the front?
        (0, "M-M-", "Mamba-2", 0.0, 0.2, 900.0, True),
        (1, "*-*-", "none", 1.0, 0.9, 100.0, True),
        (2, "X-*-", "mLSTM", 0.5, 0.5, 500.0, True),
        (3, "M-*-", "Mamba-2", 0.5, 0.3, 300.0, False),
    ]
    df = pd.DataFrame(rows, columns=["number", "pattern", "family", "attn_ratio", "acc", "tps", "pareto"])
    df["p.ssm"] = ["mamba2", "mamba2", "mlstm", "mamba2"]
    df["m.params"] = [1e6, 2e6, 1.5e6, 1.2e6]
    return df


def test_the_front_is_coloured_by_family_and_the_rest_grey():
    fig = figures.pareto_figure(frame(), "acc", "tps", directions={"acc": "maximize", "tps": "maximize"},
                                objectives=["acc", "tps"])
    traces = {t.name: t for t in fig.data if t.name}
    assert traces["dominated (1)"].marker.color == figures.DOMINATED
    assert {"Mamba-2 (1)", "mLSTM (1)", "attention only (1)"} <= set(traces)
    assert traces["Mamba-2 (1)"].marker.color == figures.SYMBOL_COLORS["M"]
    hover = traces["Mamba-2 (1)"].customdata[0][2]
    assert "ssm=mamba2" in hover and "params" in hover
    assert any(t.mode == "lines" for t in fig.data)  # the front's staircase, with two objectives on the axes
    assert fig.layout.xaxis.title.text == "acc ↑"


def test_the_front_carries_error_bars_of_the_seeds_spread():
    df = frame()
    df["sd.acc"] = [0.01, 0.02, 0.03, 0.04]
    dirs = {"acc": "maximize", "tps": "maximize"}
    traces = {t.name: t for t in figures.pareto_figure(df, "acc", "tps", directions=dirs).data if t.name}
    assert list(traces["Mamba-2 (1)"].error_x.array) == [0.01] and traces["Mamba-2 (1)"].error_y.array is None
    plain = {t.name: t for t in figures.pareto_figure(frame(), "acc", "tps", directions=dirs).data if t.name}
    assert plain["Mamba-2 (1)"].error_x.array is None  # one seed: no bars


def test_the_front_by_attention_share():
    fig = figures.pareto_figure(frame(), "acc", "tps", directions={}, color="attn_ratio")
    (front,) = [t for t in fig.data if t.name and t.name.startswith("Pareto")]
    assert list(front.marker.color) == [0.0, 1.0, 0.5] and front.marker.cmax == 1


def test_strips_one_row_per_architecture_one_cell_per_sublayer():
    fig = figures.strip_figure([(4, "M-M*-"), (9, "XEX-")])
    heat = fig.data[0]
    codes = list(figures.SYMBOL_COLORS)
    assert list(heat.y) == ["trial 4", "trial 9"]
    assert list(heat.z[0]) == [codes.index(c) for c in "M-M*-"]
    assert list(heat.z[1][:4]) == [codes.index(c) for c in "XEX-"] and heat.z[1][4] is None  # padding
    assert "trial 4 · sublayer 3: attention (*)" in heat.text[0][3]
    legend = {t.name: t.marker.opacity for t in fig.data[1:]}
    assert legend["M  Mamba-2"] == 1.0 and legend["m  Mamba-1"] < 1  # present, absent


def test_ablation_intervals_and_a_single_run():
    report = pd.DataFrame([
        ("pos", "rope", True, "lm_loss", 3, 2.0, 0.1, None, None),
        ("pos", "nope", False, "lm_loss", 3, 2.2, 0.1, 0.2, 0.15),
        ("ssm", "mamba2", True, "lm_loss", 1, 2.0, math.inf, None, None),
        ("ssm", "mlstm", False, "lm_loss", 1, 2.5, math.inf, 0.5, math.inf),
    ], columns=["factor", "level", "is_base", "metric", "n", "mean", "ci", "diff", "diff_ci"])
    fig = figures.ablation_figure(report, "lm_loss")
    pos, ssm = fig.data
    assert list(pos.y) == [0.0, 0.2] and list(pos.error_y.array) == [0.0, 0.15]
    assert list(ssm.error_y.array) == [0.0, 0.0] and "no interval" in ssm.customdata[1][1]
    means = figures.ablation_figure(report, "lm_loss", what="mean")
    assert list(means.data[0].y) == [2.0, 2.2]


def test_curves_and_importances():
    curves = {3: {"lm": [(1, 10, 5.0), (2, 20, 4.0)]}, 5: {"mqar": [(1, 10, 3.0)]}}
    fig = figures.curves_figure(curves, "lm", x="step")
    assert len(fig.data) == 1 and list(fig.data[0].x) == [1, 2]
    imp = figures.importance_figure({"ssm": 0.7, "attn_ratio": 0.3})
    assert list(imp.data[0].y) == ["attn_ratio", "ssm"]


def nas(*args, timeout=60):
    cmd = [sys.executable, "-m", "nas.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_nas_dashboard_refuses_a_busy_port_in_one_sentence():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = nas("dashboard", "--port", str(s.getsockname()[1]))
    assert r.returncode == 2 and r.stderr.startswith("error: cannot serve on 127.0.0.1:")
    assert r.stderr.count("\n") == 1  # one sentence


@pytest.mark.parametrize("port", ["0", "70000"])
def test_nas_dashboard_refuses_a_port_out_of_range(port):
    r = nas("dashboard", "--port", port)
    assert r.returncode == 2 and "--port must be between 1 and 65535" in r.stderr


def test_dominated_trials_hover_in_full_until_there_are_thousands(monkeypatch):
    dirs = {"acc": "maximize", "tps": "maximize"}
    (grey,) = [t for t in figures.pareto_figure(frame(), "acc", "tps", directions=dirs).data
               if t.name.startswith("dominated")]
    assert "ssm=mamba2" in grey.customdata[0][2]
    monkeypatch.setattr(figures, "FULL_HOVER", 0)
    (grey,) = [t for t in figures.pareto_figure(frame(), "acc", "tps", directions=dirs).data
               if t.name.startswith("dominated")]
    assert list(grey.customdata) == [3] and list(grey.text) == ["M-*-"]


# ----- hypervolume history, parallel coordinates, slices -----------------------------------------------
def study(n: int = 40, k: int = 2, seed: int = 0) -> pd.DataFrame:
    """A reader-like frame of `n` trials (a few not complete), `k` objectives, categorical and numeric
    parameters, with all-attention and pure-SSM architectures among them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ratio = rng.choice(["0", "1:3", "all"], n)
    ssm = rng.choice(["mamba2", "mlstm"], n)
    patterns = [
        "*-*-" if r == "all" else ("M-M-" if s == "mamba2" else "X-X-") if r == "0" else
        ("M-*-" if s == "mamba2" else "X-*-") for r, s in zip(ratio, ssm)
    ]
    df = pd.DataFrame({
        "number": np.arange(n),
        "status": ["complete"] * (n - 3) + ["failed", "running", "infeasible"],
        "pattern": patterns,
        "family": [{"M": "Mamba-2", "X": "mLSTM"}.get(p[0], "none") for p in patterns],
        "completed": 1.7e9 + np.arange(n) * 60.0,
        "p.attn_ratio": ratio.astype(object),
        "p.ssm": ssm.astype(object),
        "p.d_state": rng.choice([16, 64], n).astype(object),
        "p.placement": rng.choice(["even", "late"], n).astype(object),
    })
    for j in range(k):
        df[f"o{j}"] = rng.random(n)
    df.loc[n - 3:, [f"o{j}" for j in range(k)]] = math.nan
    from nas.pareto import pareto_mask

    df["pareto"] = False
    done = df["status"] == "complete"
    df.loc[done, "pareto"] = pareto_mask(df.loc[done, [f"o{j}" for j in range(k)]].to_numpy(), ["maximize"] * k)
    return df


@pytest.mark.parametrize("k", [1, 2, 3])
def test_hypervolume_history_matches_the_projects_hypervolume_at_every_completion(k):
    import numpy as np

    from dashboard import analysis
    from nas.pareto import hypervolume

    df = study(60, k)
    dirs = ["maximize", "minimize", "maximize"][:k]
    metrics = [f"o{j}" for j in range(k)]
    hist = analysis.hypervolume_history(df, metrics, dirs)
    done = df[df["status"] == "complete"].sort_values("completed")
    assert list(hist["trials"]) == list(range(1, len(done) + 1))  # few trials: every completion
    assert (np.diff(hist["hypervolume"]) >= -1e-12).all() and 0 < hist["hypervolume"].iloc[-1] <= 1
    p = analysis._normalised(done[metrics].to_numpy(), dirs)
    for t, hv in zip(hist["trials"], hist["hypervolume"]):
        assert hv == pytest.approx(hypervolume(p[:t], ["minimize"] * k, np.ones(k)), abs=1e-9)


def test_hypervolume_history_of_a_large_study_is_thinned_and_fast():
    import time

    import numpy as np

    from dashboard import analysis

    n = 10_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"number": np.arange(n), "status": "complete", "completed": np.arange(n, dtype=float)})
    for j in range(3):
        df[f"o{j}"] = rng.random(n)
    t0 = time.perf_counter()
    hist = analysis.hypervolume_history(df, ["o0", "o1", "o2"], ["maximize"] * 3)
    assert time.perf_counter() - t0 < 5  # about 0.2 s on 2 cores
    assert len(hist) == analysis.HISTORY_POINTS and hist["trials"].iloc[-1] == n
    empty = analysis.hypervolume_history(df.iloc[:0], ["o0", "o1"], ["maximize"] * 2)
    assert empty.empty


def test_the_hypervolume_and_best_so_far_figures():
    from dashboard import analysis

    df = study(20, 2)
    fig = figures.hypervolume_figure(analysis.hypervolume_history(df, ["o0", "o1"], ["maximize"] * 2))
    assert fig.data[0].line.shape == "hv" and len(fig.data[0].y) == 17
    fig = figures.hypervolume_figure(analysis.hypervolume_history(df, ["o0", "o1"], ["maximize"] * 2),
                                     x="trials")
    assert list(fig.data[0].x)[:3] == [1, 2, 3] and fig.layout.xaxis.title.text == "complete trials"
    best = analysis.best_so_far(df, "o0", "minimize")
    assert list(best["best"]) == sorted(best["best"], reverse=True)
    fig = figures.history_figure(best, "o0", "minimize")
    assert [t.name for t in fig.data] == ["trial", "best so far"] and fig.layout.yaxis.title.text == "o0 ↓"


def test_a_parameter_that_did_not_apply_shows_as_missing():
    from dashboard import analysis

    df = study(40, 2)
    shown = analysis.shown_params(df, ["attn_ratio", "ssm", "d_state", "placement"])
    attention_only = df["pattern"] == "*-*-"
    assert shown.loc[attention_only, "ssm"].isna().all() and shown.loc[attention_only, "placement"].isna().all()
    assert shown.loc[~attention_only, "ssm"].notna().all() and shown["attn_ratio"].notna().all()
    assert shown.loc[df["pattern"] == "X-*-", "d_state"].isna().all()  # mLSTM has no d_state
    assert shown.loc[df["pattern"] == "M-M-", "placement"].isna().all()  # no attention to place
    # the front's hover leaves them out too
    fig = figures.pareto_figure(df[df["status"] == "complete"], "o0", "o1", directions={})
    hovers = [h[2] for t in fig.data if t.customdata is not None for h in t.customdata]
    patterns = [h[1] for t in fig.data if t.customdata is not None for h in t.customdata]
    for pattern, hover in zip(patterns, hovers):
        assert ("ssm=" in hover) == (pattern != "*-*-")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_parallel_coordinates_over_categorical_and_numeric_parameters(k):
    from dashboard import analysis

    df = study(40, k)
    done = df[df["status"] == "complete"]
    metrics = [f"o{j}" for j in range(k)]
    shown = analysis.shown_params(done, ["attn_ratio", "ssm", "d_state"])
    fig = figures.parallel_figure(done, shown, metrics, color=metrics[-1],
                                  directions={m: "minimize" for m in metrics},
                                  choices={"attn_ratio": ["0", "1:3", "all"], "ssm": ["mamba2", "mlstm"]})
    (par,) = fig.data
    dims = {d.label: d for d in par.dimensions}
    assert list(dims) == ["attn_ratio", "ssm", "d_state", *(f"{m} ↓" for m in metrics)]
    assert list(dims["attn_ratio"].ticktext) == ["0", "1:3", "all"]  # the space's order
    assert list(dims["ssm"].ticktext) == ["–", "mamba2", "mlstm"]  # all-attention trials: "–"
    ssm = list(dims["ssm"].values)
    assert all(v == 0 for v, p in zip(ssm, done["pattern"]) if p == "*-*-")
    assert dims["d_state"].ticktext[0] == "–"  # a number that did not apply to some: categories
    assert par.line.reversescale and len(par.line.color) == len(done)


def test_slices_one_panel_per_parameter():
    from dashboard import analysis

    df = study(40, 2)
    done = df[df["status"] == "complete"]
    shown = analysis.shown_params(done, ["attn_ratio", "ssm", "d_state", "placement"])
    fig = figures.slice_figure(done, shown, "o0", directions={"o0": "maximize"},
                               choices={"ssm": ["mamba2", "mlstm"]})
    assert [a.text for a in fig.layout.annotations] == ["attn_ratio", "ssm", "d_state", "placement"]
    assert len(fig.data) == 4 and all(len(t.y) == len(done) for t in fig.data)
    assert list(fig.layout.xaxis2.ticktext) == ["–", "mamba2", "mlstm"]
    assert fig.layout.yaxis.title.text == "o0 ↑"
    numeric = analysis.shown_params(done.assign(**{"p.layers": 16}), ["layers"])
    fig = figures.slice_figure(done, numeric, "o0", directions={})
    assert set(fig.data[0].x) == {16.0}  # every value applies: a numeric axis


def test_thinning_keeps_the_front():
    import numpy as np

    from dashboard import analysis

    df = study(400, 3)
    sample = analysis.thin(df, 100)
    assert len(sample) == 100 and sample["pareto"].sum() == df["pareto"].sum()
    assert (np.diff(sample["number"]) > 0).all()
    assert analysis.thin(df, 1000) is df


def test_the_fidelity_panels_carry_the_sources_seed_spread():
    from nas.fidelity import FidelityRow

    common = {"pairs": 3, "rho": 0.5, "low": -1.0, "high": 1.0, "larger": [1.0, 2.0, 3.0], "trials": [0, 1, 2],
              "patterns": ["M-M-", "*-*-", "X-X-"], "source": [1.5, 2.5, 3.5]}
    noisy = FidelityRow("lm_loss", source_sd=[0.1, None, 0.3], **common)
    plain = FidelityRow("decode_tps", **common)
    fig = figures.fidelity_figure([noisy, plain], {"lm_loss": "minimize", "decode_tps": "maximize"}, "src", "big")
    assert list(fig.data[0].error_x.array) == [0.1, 0.0, 0.3]  # a source trial of one seed: no bar
    assert fig.data[1].error_x.array is None
