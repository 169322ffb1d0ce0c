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
