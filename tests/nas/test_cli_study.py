"""`nas run / status / pareto / report` and bad specs, through the command line."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from studyutil import SPACE, ablation_fields, micro_profile

pytestmark = pytest.mark.slow


def nas(*args, cwd=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def write(tmp_path, name="cli", **kw):
    data = {
        "name": name,
        "space": SPACE,
        "budget": {"trials": 3},
        "concurrency": 2,
        "profile": micro_profile(),
        "storage": f"sqlite:///{tmp_path / 'studies.db'}",
        "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    data.update(kw)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, data["storage"]


def test_run_status_pareto(tmp_path):
    path, storage = write(tmp_path)
    r = nas("run", str(path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Pareto set of cli" in r.stdout and "3 complete" in r.stdout
    s = nas("status", "--storage", storage)
    assert s.returncode == 0 and "cli" in s.stdout and "search" in s.stdout
    t = nas("status", "cli", "--storage", storage)
    assert t.returncode == 0 and t.stdout.count("complete") >= 3
    assert "job time" in t.stdout and "over the 3 trials that ran a job" in t.stdout  # what the study cost
    p = nas("pareto", "cli", "--storage", storage)
    assert p.returncode == 0 and "synthetic_accuracy ↑" in p.stdout and "decode_tps ↑" in p.stdout


def test_ablation_through_the_cli(tmp_path):
    path, storage = write(
        tmp_path,
        name="abl",
        **ablation_fields(),
    )
    r = nas("run", str(path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mean ± CI" in r.stdout and "base" in r.stdout
    rep = nas("report", "abl", "--storage", storage)
    assert rep.returncode == 0 and "nope" in rep.stdout and "rope" in rep.stdout


BAD = [
    ({"space": "ratios"}, "unknown search space 'ratios'"),
    ({"objectives": [{"metric": "accuracy"}]}, "unknown metric 'accuracy'"),
    ({"objectives": [{"metric": "decode_tps.4096"}]}, "does not measure"),
    ({"objectives": [{"metric": "acc.mqar"}, {"metric": "acc.mqar"}]}, "same metric twice"),
    ({"kind": "ablation", "ablation": {"base": "jamba9", "factors": {"pos": ["rope"]}}}, "unknown preset 'jamba9'"),
    ({"kind": "ablation", "ablation": {"base": "mamba2", "factors": {"pos": ["rope"]}}}, "factor pos needs attention"),
    ({"budgett": {"trials": 2}}, "unknown key 'budgett'"),
    ({"budget": {}}, "budget needs trials, hours or both"),
    ({"sampler": "cmaes"}, "'sampler'"),
    ({"name": "a b"}, "study name 'a b'"),
    ({"profile": "cpu-huge"}, "unknown profile 'cpu-huge'"),
    (
        {"space": {**SPACE, "dimensions": {"layers": {"low": 2, "high": 4, "log": True}}}, "sampler": "grid"},
        "grid search needs",
    ),
]


@pytest.mark.parametrize(("change", "words"), BAD, ids=[w.split("'")[0].strip()[:20] or w for _, w in BAD])
def test_a_bad_spec_is_one_sentence_exit_2_and_no_study(tmp_path, change, words):
    path, _ = write(tmp_path, **change)
    r = nas("run", str(path), timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    msg = r.stderr.strip()
    assert msg.startswith("error:") and words in msg and "Traceback" not in msg, msg
    assert not (tmp_path / "studies.db").exists()  # no study, not even a database


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace: [unclosed\n")
    r = nas("run", str(bad), timeout=120)
    assert r.returncode == 2 and "not valid YAML" in r.stderr
    r = nas("run", str(tmp_path / "nope.yaml"), timeout=120)
    assert r.returncode == 2 and "cannot read the study spec" in r.stderr
    r = nas("pareto", "ghost", "--storage", f"sqlite:///{tmp_path / 's.db'}", timeout=120)
    assert r.returncode == 2 and "no study named 'ghost'" in r.stderr


def test_demo_spec_is_valid():
    from nas.spec import load_spec

    spec = load_spec(Path(__file__).parents[2] / "nas" / "studies" / "demo.yaml")
    assert spec.name == "demo" and spec.profile == "cpu-demo" and spec.sampler_name() == "nsga2"


def test_export_the_pareto_front_of_a_real_study(tmp_path):
    import json as _json

    from studyutil import make_spec

    from nas.executor import InlineExecutor
    from nas.export import load_exported_yaml
    from nas.reader import pareto_trials, study_trials
    from nas.runner import run_study

    urls = {"storage": f"sqlite:///{tmp_path / 'studies.db'}", "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    space = {**SPACE, "dimensions": {"layers": 2, "attn_ratio": ["0", "1:1", "all"], "ssm": "mamba2"}}
    spec = make_spec(urls, name="winners", space=space, budget={"trials": 3}, concurrency=1)
    run_study(spec, executor=InlineExecutor(), show_progress=False, track=False)
    front = {r["trial"] for r in pareto_trials(urls["storage"], "winners")}
    out = tmp_path / "front"
    r = nas(
        "export", "--study", "winners", "--pareto", "--format", "hf", "--storage", urls["storage"], "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert {d.name for d in out.iterdir()} == {f"trial-{n}" for n in front}
    from transformers import AutoConfig

    for d in out.iterdir():
        assert AutoConfig.from_pretrained(d).model_type in (
            "mamba2",
            "bamba",
            "granitemoehybrid",
            "nemotron_h",
            "llama",
        )
    first = study_trials(urls["storage"], "winners")[0]
    r = nas(
        "export",
        "--study",
        "winners",
        "--trial",
        str(first.number),
        "--format",
        "yaml",
        "--storage",
        urls["storage"],
        "--out",
        str(tmp_path / "one"),
    )
    assert r.returncode == 0, r.stderr
    assert load_exported_yaml(tmp_path / "one")[0].to_dict() == first.arch
    r = nas(
        "export",
        "--study",
        "winners",
        "--trial",
        "99",
        "--format",
        "yaml",
        "--storage",
        urls["storage"],
        "--out",
        str(tmp_path / "none"),
    )
    assert r.returncode == 2 and "no trial 99" in r.stderr and not (tmp_path / "none").exists()
    assert _json.dumps(first.arch)


def test_fidelity_retrains_a_studys_trials_larger_and_reports_their_rank_correlation(tmp_path):
    path, storage = write(tmp_path, name="src", budget={"trials": 6}, sampler="grid",  # 5 architectures
                          objectives=[{"metric": "lm_loss"}, {"metric": "decode_tps"}])
    assert nas("run", str(path), "--no-tracking").returncode == 0
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({**micro_profile(), "name": "micro-10x", "params": 5e5}))
    args = ("fidelity", "src", "--profile", str(big), "--top", "2", "--sample", "2", "--storage", storage,
            "--no-tracking")
    r = nas(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Fidelity of src-at-micro-10x" in r.stdout and "Spearman ρ" in r.stdout
    assert "Each re-trained trial of src" in r.stdout and " → " in r.stdout

    from nas.fidelity import fidelity_report
    from nas.reader import pareto_trials, study_frame, trial_archs
    from search_spaces.cost import param_counts

    meta, df = study_frame(storage, "src-at-micro-10x")
    assert meta.kind == "fidelity" and meta.spec["fidelity"]["source"] == "src"
    chosen = sorted(int(n) for n in meta.spec["fidelity"]["archs"])
    # the front's best two (decode speed is measured, so the front may hold one or more) and two others
    patterns = {n: arch.pattern for n, arch in trial_archs(storage, "src")}
    front = {patterns[r["trial"]] for r in pareto_trials(storage, "src")}
    assert len(chosen) == min(2, len(front)) + 2 and sorted(int(n) for n in df["p.source"]) == chosen
    assert len({patterns[n] for n in chosen}) == len(chosen)  # no repeats
    small = dict(trial_archs(storage, "src"))
    for number, arch in trial_archs(storage, "src-at-micro-10x"):  # the same layout, ten times the parameters
        source = small[int(df.loc[df["number"] == number, "p.source"].iloc[0])]
        assert arch.pattern == source.pattern and param_counts(arch).total > 5 * param_counts(source).total
    rows = fidelity_report(storage, "src-at-micro-10x")
    assert [x.metric for x in rows] == ["lm_loss", "decode_tps"]
    assert all(x.pairs == len(chosen) and len(x.source) == len(x.larger) == x.pairs for x in rows)
    assert all(x.trials == chosen for x in rows)
    assert all(x.source_sd is None for x in rows)  # one seed: no spread to show beside the source's values
    assert all(-1 <= x.rho <= 1 and x.low <= x.high for x in rows if x.rho == x.rho)

    again = nas(*args)  # the same command resumes the study: nothing is trained twice
    assert again.returncode == 0 and f"{len(chosen)} complete" in again.stdout
    shown = nas("fidelity", "src", "--profile", str(big), "--report", "--storage", storage)  # trains nothing
    assert shown.returncode == 0 and "Fidelity of src-at-micro-10x" in shown.stdout
    assert "complete" not in shown.stdout  # no run summary: the report alone
    # --metric: any metric both sizes record, here one the study does not optimise, beside an objective
    picked = fidelity_report(storage, "src-at-micro-10x", ["bpb", "lm_loss"])
    assert [x.metric for x in picked] == ["bpb", "lm_loss"] and picked[1].larger == rows[0].larger
    assert picked[0].pairs == len(chosen) and picked[0].larger != rows[0].larger  # bpb: its own values
    by_metric = nas("fidelity", "src", "--profile", str(big), "--report", "--metric", "bpb", "--storage", storage)
    assert by_metric.returncode == 0 and "each metric's rank" in by_metric.stdout
    assert "bpb" in by_metric.stdout and "decode_tps" not in by_metric.stdout
    unknown = nas("fidelity", "src", "--profile", str(big), "--report", "--metric", "acc.nope", "--storage", storage)
    assert unknown.returncode == 2 and "do not both record 'acc.nope'" in unknown.stderr and "bpb" in unknown.stderr
    every = nas("fidelity", "src", "--profile", str(big), "--report", "--metric", "all", "--storage", storage)
    assert every.returncode == 0 and "bpb" in every.stdout and "Each re-trained trial" not in every.stdout
    not_a_report = nas("fidelity", "src", "--profile", str(big), "--metric", "bpb", "--storage", storage)
    assert not_a_report.returncode == 2 and "add --report" in not_a_report.stderr
    task = next(x.metric[len("acc."):] for x in fidelity_report(storage, "src-at-micro-10x", ["all"])
                if x.metric.startswith("acc."))  # the one task of the micro profile
    for without, said in (("nope", f"--without nope: the two studies record no such task; choose from {task}"),
                           (task, "--without names every task the studies record: no recall mean is left")):
        refused = nas("fidelity", "src", "--profile", str(big), "--report", "--without", without, "--storage", storage)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr[-500:]
    no_report = nas("fidelity", "src", "--profile", str(big), "--without", task, "--storage", storage)
    assert no_report.returncode == 2 and "--without recomputes a report's recall mean; add --report" in no_report.stderr
    from nas.fidelity import fidelity_spec  # --seeds: the larger size's seeds, instead of the study's

    assert fidelity_spec(storage, "src", str(big), top=2, sample=2).seeds == 1
    assert fidelity_spec(storage, "src", str(big), top=2, sample=2, seeds=3).seeds == 3

    no_larger = nas("fidelity", "src", "--profile", str(path.parent / "small.yaml"), "--storage", storage)
    assert no_larger.returncode != 0
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({**micro_profile(), "name": "micro-same"}))
    same = nas("fidelity", "src", "--profile", str(tmp_path / "small.yaml"), "--storage", storage)
    assert same.returncode == 2 and "is not larger than the study's profile" in same.stderr
    assert "src-at-micro-same" not in nas("status", "--storage", storage).stdout  # nothing half-made
