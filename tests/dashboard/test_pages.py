"""Every page in Streamlit's AppTest: an empty database, finished, failed, running and ablation studies,
service mode with a queue, submitting and exporting."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest
import yaml
from dashutil import APP, Queued, fake_queue, figures, page, sign_in, texts, users_file, values
from streamlit.testing.v1 import AppTest

import nas
from search_spaces.config import ConfigError

PAGES = ["views/studies.py", "views/study.py", "views/ablation.py", "views/submit.py", "views/export.py"]


def studies_table(at):
    (table,) = [d.value for d in at.dataframe if "study" in d.value.columns]
    return table.set_index("study")


# ----- an empty database --------------------------------------------------------------------------
@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.split("/")[1][:-3])
def test_every_page_opens_on_an_empty_database(path, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'nothing' / 'studies.db'}"
    monkeypatch.setenv("NAS_STORAGE", url)
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    at = page(AppTest.from_file(str(APP), default_timeout=60), path)
    shown = texts(at)
    if path == "views/submit.py":
        assert (
            at.text_area[0].value.startswith("# A study spec") and "name: my-study" in at.text_area[0].value
        )
    elif path == "views/ablation.py":
        assert "No ablation studies yet" in shown
    else:
        assert "No studies yet" in shown
    assert not (tmp_path / "nothing").exists()  # reading never creates the database


# ----- Studies ------------------------------------------------------------------------------------
def test_studies_lists_every_study_with_status_progress_and_best(app):
    at = page(app, "views/studies.py")
    table = studies_table(at)
    assert set(table.index) == {"search", "failing", "diverging", "live", "abl"}
    assert table.loc["search", "status"] == "done" and table.loc["search", "finished"] == 4
    assert table.loc["search", "progress"] == pytest.approx(1.0)
    assert (
        "synthetic_accuracy" in table.loc["search", "best so far"]
        and "↑" in table.loc["search", "best so far"]
    )
    assert table.loc["failing", "failed"] == 1 and table.loc["failing", "infeasible"] >= 1
    assert table.loc["diverging", "failed"] == 2 and table.loc["diverging", "best so far"] == ""
    live = table.loc["live"]
    assert live["status"] == "running" and live["running"] == 2 and live["queued"] == 2 and live["ETA"]
    assert live["progress"] == pytest.approx(2 / 6)
    assert table.loc["abl", "kind"] == "ablation"
    assert [link.label for link in at.get("page_link")] == ["search", "failing", "diverging", "live", "abl"]


def test_studies_charts_finished_trials_over_time_and_reads_the_latest_ahead(app, studies, monkeypatch):
    from dashboard import common
    from nas import reader

    asked = []
    monkeypatch.setattr(common, "prefetch", lambda url, names: asked.append(names))
    at = page(app, "views/studies.py")
    (fig,) = figures(at)  # the progress chart
    lines = {t["name"]: t for t in fig["data"]}
    assert set(lines) == {"search", "failing", "diverging", "live", "abl"}
    ends = reader.finish_times(studies["storage"], ["search", "live"])
    assert len(ends["search"]) == 4 and len(ends["live"]) == 2 and list(ends["search"]) == sorted(ends["search"])
    assert values(lines["search"]["y"]) == [1, 2, 3, 4] and values(lines["live"]["y"]) == [1, 2]
    # the running study first, then the most recently active, are read ahead for the Study page
    assert asked and asked[0][0] == "live" and len(asked[0]) == common.PREFETCH


def test_reading_ahead_fills_the_study_pages_cache(studies, monkeypatch):
    import time

    from dashboard import common
    from nas import reader

    url = studies["storage"]
    common._study_frame.clear()
    common.prefetch(url, ["search", "live"])
    deadline = time.time() + 60
    time.sleep(0.05)
    while common._prefetching.locked() and time.time() < deadline:
        time.sleep(0.05)
    calls = []
    real = reader.study_frame
    monkeypatch.setattr(reader, "study_frame", lambda *a: calls.append(a) or real(*a))
    for name in ("search", "live", "abl"):
        common._study_frame(url, name, reader.study_version(url, name))
    assert calls == [(url, "abl")]  # read ahead: search and live; not abl


def test_a_selected_study_offers_its_pages(app):
    at = page(app, "views/studies.py")
    at.session_state["studies_table"] = {"selection": {"rows": [4], "columns": [], "cells": []}}
    at.run()
    labels = [b.label for b in at.button]
    assert "Open the Study page" in labels and "Ablation report" in labels and "Export a trial" in labels


@pytest.fixture
def service(studies, monkeypatch, app, tmp_path):
    entries = [
        Queued(3, "search", "done", optuna_study_name="search", spec={"kind": "search"}),
        Queued(5, "live", "running", priority=2, requested="pause", optuna_study_name="live"),
        Queued(
            6, "next-up", "queued", priority=1, optuna_study_name="next-up", spec={"budget": {"trials": 12}}
        ),
        Queued(4, "broken", "failed", error="the scheduler lost its database", optuna_study_name="broken"),
    ]
    q = fake_queue(studies["storage"], studies["tracking"], entries)
    monkeypatch.setitem(sys.modules, "nas.service.queue", q)
    monkeypatch.setattr(nas, "queue", q, raising=False)
    monkeypatch.delenv("NAS_STORAGE")  # in service mode the storage is the queue's
    monkeypatch.setenv("NAS_DASHBOARD_USERS", str(users_file(tmp_path)))  # actions need a sign-in
    return q


def test_service_mode_merges_the_queue_with_the_studies_by_name(service, app):
    at = page(app, "views/studies.py")
    table = studies_table(at)
    assert {"next-up", "broken", "search", "live"} <= set(table.index)
    assert table.loc["next-up", "status"] == "queued" and table.loc["next-up", "queued"] == 12
    assert table.loc["live", "status"] == "running (pausing)" and table.loc["live", "priority"] == 2
    assert table.loc["search", "queue id"] == 3 and table.loc["search", "submitted by"] == "ada"
    assert "the scheduler lost its database" in texts(at)
    assert "service mode" in "\n".join(c.value for c in at.sidebar.caption)


def test_service_mode_pauses_through_the_queue(service, app):
    at = sign_in(page(app, "views/studies.py"))
    rows = list(studies_table(at).index)
    at.session_state["studies_table"] = {
        "selection": {"rows": [rows.index("next-up")], "columns": [], "cells": []}
    }
    at.run()
    next(b for b in at.button if b.label == "Pause").click().run()
    assert [c[:2] for c in service.calls] == [("pause", 6)]


# ----- Study --------------------------------------------------------------------------------------
def test_study_shows_the_front_the_strips_and_the_trials(app, studies):
    from nas.reader import pareto_trials

    at = page(app, "views/study.py", study="search")
    front, strips = figures(at)[:2]
    names = [t.get("name", "") for t in front["data"]]
    pareto = {r["trial"] for r in pareto_trials(studies["storage"], "search")}
    assert any(n.startswith("dominated") for n in names) == (len(pareto) < 4)
    assert (
        sum(
            len(t["x"]) if isinstance(t["x"], list) else 1
            for t in front["data"]
            if "Pareto" in str(t.get("legendgrouptitle", "")) or "front" in t.get("name", "")
        )
        >= 1
    )
    heat = strips["data"][0]
    assert heat["type"] == "heatmap" and sorted(heat["y"]) == sorted(f"trial {n}" for n in pareto)
    legend = [t["name"] for t in strips["data"][1:]]
    assert legend == [
        "*  attention", "M  Mamba-2", "m  Mamba-1", "X  mLSTM", "D  Gated DeltaNet", "C  gated short convolution",
        "W  sliding-window attention", "-  dense MLP", "E  MoE",
    ]
    table = at.dataframe[0].value
    assert sorted(table["trial"]) == [0, 1, 2, 3] and set(table["trial"][table["Pareto"]]) == pareto
    assert "mlflow ui --backend-store-uri" in texts(
        at
    )  # a local store: the command, and run ids in the table
    assert table["MLflow run"].str.len().min() == 32


def test_study_axes_and_colouring(app):
    at = page(app, "views/study.py", study="search")
    at.selectbox(key="pareto_x").set_value("params")
    at.selectbox(key="pareto_y").set_value("lm_loss")
    at.button_group(key="pareto_color").set_value("attention share")
    at.run()
    front = figures(at)[0]
    assert (
        front["layout"]["xaxis"]["title"]["text"] == "params ↓"
        and "lm_loss" in front["layout"]["yaxis"]["title"]["text"]
    )
    assert any("colorscale" in t.get("marker", {}) for t in front["data"])


def test_study_links_trials_to_an_mlflow_server(app, studies, monkeypatch):
    q = fake_queue(studies["storage"], "http://mlflow.example:5000", [])
    monkeypatch.setitem(sys.modules, "nas.service.queue", q)
    monkeypatch.setattr(nas, "queue", q, raising=False)
    at = page(app, "views/study.py", study="search")
    links = at.dataframe[0].value["MLflow"].tolist()
    assert all(
        link.startswith("http://mlflow.example:5000/#/experiments/") and "/runs/" in link for link in links
    )


def test_study_with_failed_trials(app):
    at = page(app, "views/study.py", study="failing")
    table = at.dataframe[0].value
    reasons = " ".join(table["failure"])
    assert "became nan at step 3" in reasons and "above the limit" in reasons
    assert any(e.label.startswith("Why trials failed") for e in at.expander)
    at = page(app, "views/study.py", study="diverging")
    assert "No complete trial yet" in texts(at) and len(at.dataframe[0].value) == 2


def test_study_still_running(app):
    at = page(app, "views/study.py", study="live", tab="Running")
    assert "status **running**" in texts(at)
    run = at.dataframe[0].value
    assert run["status"].tolist() == ["running", "running"] and run["step"].tolist() == ["2/8", "3/8"]
    assert run["progress"].tolist() == pytest.approx([2 / 8, 3 / 8])
    assert "2 trials in flight" in texts(at)


def test_learning_curves_of_the_pareto_trials(app):
    at = page(app, "views/study.py", study="search", tab="Learning curves")
    curves = figures(at)[-1]
    assert curves["data"] and all(len(t["y"]) >= 2 for t in curves["data"])
    assert at.multiselect(key="curve_trials").value


def test_parameter_importances(app):
    at = page(app, "views/study.py", study="search", tab="Parameter importances")
    assert "PED-ANOVA" in texts(at) or "Importances need" in texts(at) or "same parameters" in texts(at)
    at = page(app, "views/study.py", study="diverging", tab="Parameter importances")
    assert "at least 4 complete trials" in texts(at)


# ----- Study: hypervolume, parallel coordinates, slices (studies written through Optuna, no training) ----
OBJECTIVES = [
    {"metric": "synthetic_accuracy", "direction": "maximize"},
    {"metric": "decode_tps", "direction": "maximize"},
    {"metric": "lm_loss", "direction": "minimize"},
]


def _written_study(urls: dict, name: str, objectives: list[dict], complete: int, failed: int = 0) -> None:
    """A study of `complete` finished trials over attn_ratio × ssm (attention-only ones among them)."""
    import numpy as np
    from studyutil import add_finished, make_spec

    rng = np.random.default_rng(0)
    rows = []
    for i in range(complete + failed):
        ratio, ssm = ["0", "1:1", "all"][i % 3], ["mamba2", "mlstm"][i // 3 % 2]
        sym = "M" if ssm == "mamba2" else "X"
        metrics = {"synthetic_accuracy": float(rng.random()), "decode_tps": float(rng.uniform(100, 900)),
                   "lm_loss": float(rng.uniform(2, 5))}
        rows.append({"params": {"attn_ratio": ratio, "ssm": ssm}, "metrics": metrics, "failed": i >= complete,
                     "pattern": {"0": f"{sym}-{sym}-", "1:1": f"{sym}-*-", "all": "*-*-"}[ratio]})
    add_finished(make_spec(urls, name=name, objectives=objectives, budget={"trials": complete + failed}), rows)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("written")
    urls = {"storage": f"sqlite:///{folder / 'studies.db'}", "tracking": f"sqlite:///{folder / 'mlflow.db'}"}
    _written_study(urls, "two", OBJECTIVES[:2], 24)
    _written_study(urls, "three", OBJECTIVES, 24)
    _written_study(urls, "one", OBJECTIVES[2:], 12)
    _written_study(urls, "lonely", OBJECTIVES[:2], 1, failed=2)
    return urls


@pytest.fixture
def fast_app(written, monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_STORAGE", written["storage"])
    monkeypatch.setenv("NAS_TRACKING", written["tracking"])
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    return AppTest.from_file(str(APP), default_timeout=60)


def test_an_all_attention_trial_shows_no_ssm_in_the_table(fast_app):
    table = page(fast_app, "views/study.py", study="two").dataframe[0].value
    attention_only = table["pattern"] == "*-*-"
    assert attention_only.any() and (table.loc[attention_only, "ssm"] == "–").all()
    assert set(table.loc[~attention_only, "ssm"]) == {"mamba2", "mlstm"}


@pytest.mark.parametrize("name, k", [("two", 2), ("three", 3)])
def test_hypervolume_grows_with_the_completions(fast_app, name, k):
    at = page(fast_app, "views/study.py", study=name, tab="Hypervolume")
    (hv,) = [f for f in figures(at) if f["data"] and f["data"][0].get("name") == "hypervolume"]
    ys = values(hv["data"][0]["y"])
    assert len(ys) == 24 and ys == sorted(ys) and 0 < ys[-1] <= 1
    assert "Hypervolume of the Pareto front of " + " and ".join(o["metric"] for o in OBJECTIVES[:k]) in texts(at)
    at.button_group(key="history_x").set_value("complete trials").run()
    hv = figures(at)[-1]
    assert hv["layout"]["xaxis"]["title"]["text"] == "complete trials"


def test_one_objective_shows_its_best_so_far(fast_app):
    at = page(fast_app, "views/study.py", study="one", tab="History")
    fig = figures(at)[-1]
    assert [t["name"] for t in fig["data"]] == ["trial", "best so far"]
    best = values(fig["data"][1]["y"])
    assert best == sorted(best, reverse=True)  # lm_loss is minimised


@pytest.mark.parametrize("name", ["two", "three", "one"])
def test_parallel_coordinates_over_the_search_parameters(fast_app, name):
    at = page(fast_app, "views/study.py", study=name, tab="Parallel coordinates")
    (par,) = [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "parcoords"]
    dims = {d["label"]: d for d in par["data"][0]["dimensions"]}
    assert list(dims)[:2] == ["attn_ratio", "ssm"]
    assert dims["attn_ratio"]["ticktext"] == ["0", "1:1", "all"]  # the search space's order
    assert dims["ssm"]["ticktext"] == ["–", "mamba2", "mlstm"]
    assert "did not apply" in texts(at)


def test_slices_of_each_objective(fast_app):
    at = page(fast_app, "views/study.py", study="three", tab="Slices")
    fig = figures(at)[-1]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["attn_ratio", "ssm"]
    assert fig["layout"]["yaxis"]["title"]["text"] == "synthetic_accuracy ↑"
    at.button_group(key="slice_metric").set_value("lm_loss").run()
    assert figures(at)[-1]["layout"]["yaxis"]["title"]["text"] == "lm_loss ↓"


@pytest.mark.parametrize("tab, words", [
    ("Hypervolume", "needs two complete trials; this study has 1"),
    ("Parallel coordinates", "need at least 2 complete trials; this study has 1"),
])
def test_too_few_complete_trials_is_a_sentence_not_an_empty_chart(fast_app, tab, words):
    at = page(fast_app, "views/study.py", study="lonely", tab=tab)
    assert words in texts(at)
    assert not [f for f in figures(at) if f["data"] and f["data"][0]["type"] in ("parcoords",)]
    at = page(fast_app, "views/study.py", study="lonely", tab="Slices")  # one trial is enough for slices
    assert [a["text"] for a in figures(at)[-1]["layout"]["annotations"]] == ["attn_ratio", "ssm"]


# ----- Ablation -----------------------------------------------------------------------------------
def test_ablation_effects_with_intervals(app):
    at = page(app, "views/ablation.py", study="abl")
    (fig,) = figures(at)
    assert fig["data"][0]["error_y"]["visible"] and fig["layout"]["annotations"][0]["text"] == "pos"
    table = at.dataframe[0].value
    assert set(table["level"]) == {"nope", "rope"} and set(table["metric"]) == {"lm_loss"}
    assert "base" in set(table["vs base ± 95% CI"]) and all("±" in v for v in table["mean ± 95% CI"])
    at.button_group(key="ablation_what").set_value("level means").run()
    assert "mean" in figures(at)[0]["layout"]["yaxis"]["title"]["text"]


# ----- Submit -------------------------------------------------------------------------------------
BAD = "name: bad\nspace: hybrid-ratio\nbudgett: {trials: 2}\n"


def test_submit_validates_with_the_clis_message(app, tmp_path):
    from nas.spec import spec_from_text

    at = page(app, "views/submit.py")
    at.text_area[0].set_value(BAD)
    at.button[0].click().run()
    with pytest.raises(ConfigError) as err:
        spec_from_text(BAD, "the spec")
    assert [e.value for e in at.error] == [f"error: {err.value}"]
    # an uploaded file is named in the message exactly as `nas run FILE` names it
    (tmp_path / "bad.yaml").write_text(BAD)
    cli = subprocess.run(
        [sys.executable, "-m", "nas.cli", "run", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2
    at.file_uploader[0].upload("bad.yaml", BAD.encode(), "application/yaml")
    at.run()
    at.button[0].click().run()
    assert " ".join(cli.stderr.split()) == " ".join(at.error[0].value.split())


def tiny_spec(studies, name: str) -> str:
    from studyutil import SPACE, micro_profile

    return yaml.safe_dump(
        {
            "name": name,
            "space": SPACE,
            "budget": {"trials": 2},
            "profile": micro_profile(),
            "objectives": [{"metric": "synthetic_accuracy"}, {"metric": "decode_tps"}],
        }
    )


class FakePopen:
    started: typing.ClassVar[list] = []

    def __init__(self, cmd, **kw):
        self.cmd, self.kw, self.pid = cmd, kw, 424242
        FakePopen.started.append(self)

    def poll(self):
        return None


def test_submit_starts_a_local_run_that_the_studies_page_lists(app, studies, monkeypatch, tmp_path):
    from dashboard import common

    monkeypatch.setattr(common.subprocess, "Popen", FakePopen)
    FakePopen.started.clear()
    at = page(app, "views/submit.py")
    at.text_area[0].set_value(tiny_spec(studies, "fresh"))
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.error, [e.value for e in at.error]
    (proc,) = FakePopen.started
    spec_file = tmp_path / "home" / "submitted" / "fresh.yaml"
    assert proc.cmd[1:] == ["-m", "nas.cli", "run", str(spec_file)] and proc.kw["start_new_session"]
    assert proc.kw["env"]["NAS_STORAGE"] == studies["storage"] and "name: fresh" in spec_file.read_text()
    assert "process 424242" in at.success[0].value and "fresh.log" in at.success[0].value
    # a second start of the same study while it runs is refused
    next(b for b in at.button if b.label == "Start").click().run()
    assert "already running from this dashboard" in at.error[0].value
    at.switch_page("views/studies.py").run()
    assert studies_table(at).loc["fresh", "status"] == "starting"


def test_submit_refuses_a_spec_that_clashes_with_a_stored_study(app, studies):
    at = page(app, "views/submit.py")
    spec = yaml.safe_load(tiny_spec(studies, "search"))
    spec["objectives"] = [{"metric": "lm_loss"}]
    at.text_area[0].set_value(yaml.safe_dump(spec))
    at.button[0].click().run()
    assert "already exists with a different" in at.error[0].value


def test_submit_queues_in_service_mode(service, app, studies):
    at = sign_in(page(app, "views/submit.py"))
    at.text_area[0].set_value(tiny_spec(studies, "queued-one"))
    at.number_input[0].set_value(3)
    next(b for b in at.button if b.label == "Submit to the queue").click().run()
    assert ("submit", "queued-one", 3, service.calls[0][3]) == service.calls[0]
    assert "Queued **queued-one** as #7" in at.success[0].value


# ----- Export -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt,files",
    [
        ("hf", ["config.json", "README.md"]),
        ("megatron", ["megatron_args.txt", "megatron_args.sh", "train.sh"]),
        ("yaml", ["arch.yaml", "training.yaml"]),
    ],
)
def test_export_a_trial_in_each_format(app, studies, fmt, files):
    from nas.export import render
    from nas.reader import trial_archs

    at = page(app, "views/export.py", study="search")
    number = at.selectbox(key="trial").value
    ((_, cfg),) = trial_archs(studies["storage"], "search", trial=number)
    at.radio(key="format").set_value(fmt).run()
    assert [e.label for e in at.expander] == files
    expected = render(cfg, fmt)
    assert [c.value.rstrip() for c in at.code] == [expected[f].rstrip() for f in files]
    assert len(at.download_button) == len(files) + 1


def test_export_says_what_is_wrong_in_one_sentence(app):
    at = page(app, "views/export.py", study="search")
    at.text_input(key="scale_to").set_value("lots").run()
    assert at.error[0].value.startswith("error: scale to: 'lots' is not a number of parameters")
    at.text_input(key="scale_to").set_value("1.5B").run()
    assert not at.error and "1.5B" in texts(at)


def test_a_link_to_a_study_opens_that_study_whatever_was_shown_before(app):
    at = page(app, "views/study.py", study="failing")
    at.switch_page("views/studies.py").run()
    at.query_params["study"] = "abl"
    at.switch_page("views/study.py").run()
    assert at.selectbox(key="study").value == "abl"
    at.switch_page("views/studies.py").run()
    at.query_params["study"] = "abl"
    at.switch_page("views/study.py").run()
    assert at.selectbox(key="study").value == "abl"


@pytest.mark.slow
def test_a_fidelity_study_shows_each_objectives_rank_correlation(tmp_path, monkeypatch):
    """`nas fidelity`'s study: one panel per objective, source value against the larger one, ρ in its title."""
    from studyutil import make_spec, micro_profile

    from nas.executor import InlineExecutor
    from nas.fidelity import fidelity_report, fidelity_spec
    from nas.runner import run_study

    urls = {"storage": f"sqlite:///{tmp_path / 'studies.db'}", "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    source = make_spec(urls, name="src", sampler="grid", budget={"trials": 6},
                       objectives=[{"metric": "lm_loss"}, {"metric": "decode_tps"}])
    run_study(source, executor=InlineExecutor(), show_progress=False, track=False)
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({**micro_profile(), "name": "micro-10x", "params": 5e5}))
    spec = fidelity_spec(urls["storage"], "src", str(big), top=2, sample=2, tracking=urls["tracking"])
    run_study(spec, executor=InlineExecutor(), show_progress=False, track=False)
    monkeypatch.setenv("NAS_STORAGE", urls["storage"])
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    at = page(AppTest.from_file(str(APP), default_timeout=60), "views/study.py", study=spec.name)
    assert "Fidelity: src's trials re-trained here" in texts(at)
    panels = figures(at)[0]
    titles = [a["text"] for a in panels["layout"]["annotations"]]
    rows = fidelity_report(urls["storage"], spec.name)
    assert len(panels["data"]) == 2 and titles[0].startswith(f"lm_loss: ρ {rows[0].rho:+.2f}")
    assert panels["data"][0]["x"] == rows[0].source and panels["data"][0]["y"] == rows[0].larger
    every = fidelity_report(urls["storage"], spec.name, ["all"])  # the objectives, then bpb and the task's accuracy
    assert [r.metric for r in every][:2] == ["lm_loss", "decode_tps"] and "bpb" in [r.metric for r in every]
    assert any(e.label.startswith("Every quality metric's rank correlation") for e in at.expander)
    (table,) = [d.value for d in at.dataframe if "Spearman ρ" in d.value.columns]
    assert list(table["metric"]) == [r.metric for r in every]
    shown = table.set_index("metric").loc["bpb"]
    bpb = next(r for r in every if r.metric == "bpb")
    assert shown["pairs"] == bpb.pairs and (shown["Spearman ρ"] == pytest.approx(bpb.rho) or bpb.rho != bpb.rho)


def test_a_study_with_seeds_shows_its_seed_noise(tmp_path, monkeypatch):
    """Trials of three seeds each: the Study page's seed-noise table holds `nas seeds`' figures."""
    import numpy as np
    from studyutil import add_finished, make_spec

    from nas.seeds import seed_report

    urls = {"storage": f"sqlite:///{tmp_path / 'studies.db'}", "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    spec = make_spec(urls, name="noisy", objectives=[{"metric": "lm_loss"}])
    rows = []
    cells = [("0", "mamba2", "M-M-"), ("0", "mlstm", "X-X-"), ("1:1", "mamba2", "M-*-"), ("all", "mamba2", "*-*-")]
    for i, (ratio, ssm, pattern) in enumerate(cells):
        by_seed = [{"lm_loss": 3.0 + i + 0.1 * ((s * (i + 1)) % 3)} for s in range(3)]
        rows.append({"params": {"attn_ratio": ratio, "ssm": ssm}, "pattern": pattern,
                     "metrics": {"lm_loss": float(np.mean([b["lm_loss"] for b in by_seed]))},
                     "attrs": {"seed_metrics": {str(s): b for s, b in enumerate(by_seed)},  # as the runner
                               "metrics_sd": {"lm_loss": float(np.std([b["lm_loss"] for b in by_seed], ddof=1))}}})
    add_finished(spec, rows)
    monkeypatch.setenv("NAS_STORAGE", urls["storage"])
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    at = page(AppTest.from_file(str(APP), default_timeout=60), "views/study.py", study="noisy")
    assert any(e.label == "Seed noise: 4 architectures, up to 3 seeds each" for e in at.expander)
    (table,) = [d.value for d in at.dataframe if "Kendall τ" in d.value.columns]
    (expected,) = seed_report(urls["storage"], "noisy")
    shown = table.set_index("metric").loc["lm_loss"]
    assert shown["sd over seeds"] == pytest.approx(expected.sd) and shown["Kendall τ"] == pytest.approx(expected.tau)
    assert shown["separation"] == pytest.approx(expected.separation)


def test_a_study_of_one_seed_shows_no_seed_noise(fast_app):
    at = page(fast_app, "views/study.py", study="two")
    assert not any(e.label.startswith("Seed noise") for e in at.expander)
