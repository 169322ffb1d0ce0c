"""Every spec and command in the README and docs/ works as written.

Each YAML block is loaded with the project's loader for what it is (a study spec, an architecture,
training settings, a compose override). Each `nas …` line of a code block is either run for real in a
scratch folder, against studies made there under the names the docs use, or, where running it would train
models or start services, parsed by the CLI itself (option names, types and ranges) with any spec file it
names loaded. The summary test says which were run and which were only checked.
"""

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[1]
DOCS = [REPO / "README.md", REPO / "DEVELOPERS.md", *sorted((REPO / "docs").glob("*.md"))]
# commands that train, serve or need the service's database: parsed, not run
PARSED_ONLY = {"eval", "run", "demo", "dashboard", "serve", "submit", "list", "show", "pause", "resume", "cancel",
               "db", "fidelity"}
FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    """(where, language, text) of every fenced block, indented ones (inside lists) dedented."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            line = text[: m.start()].count("\n") + 1
            out.append((f"{doc.relative_to(REPO)}:{line}", m.group(2), textwrap.dedent(m.group(3))))
    return out


def yaml_blocks():
    return [(w, t) for w, lang, t in blocks() if lang == "yaml"]


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `nas`) of every `nas` command in a shell block (`a && nas demo`, `nas x ; nas y`)."""
    out = []
    for where, lang, text in blocks():
        if lang not in ("", "bash", "sh") or "──" in text:  # diagrams draw with box characters
            continue
        for line in text.replace("\\\n", " ").splitlines():
            if "nas " not in line:
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            segment: list[str] = []
            for w in [*words, ";"]:
                if w in (";", "&&", "||", "|"):
                    if segment[:1] == ["nas"] and len(segment) > 1:
                        out.append((where, segment[1:]))
                    segment = []
                else:
                    segment.append(w)
    return out


def test_the_docs_have_what_this_test_checks():
    cmds = {argv[0] for _, argv in commands()}
    assert {"demo", "run", "init", "status", "pareto", "export", "presets", "cost", "eval", "submit"} <= cmds
    assert len(yaml_blocks()) >= 4


# ----- YAML ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("where", "text"), yaml_blocks(), ids=[w for w, _ in yaml_blocks()])
def test_every_yaml_block_loads(where, text):
    from nas.export.native import training
    from nas.spec import spec_from_text
    from search_spaces import ArchConfig

    data = yaml.safe_load(text)
    assert isinstance(data, dict), where
    if "objectives" in data or "space" in data or "ablation" in data:
        spec = spec_from_text(text, where)
        shipped = {load.name: load for load in map(_spec, (REPO / "studies").glob("*.yaml"))}
        if spec.name in shipped:  # the README shows a shipped spec: the two must agree
            assert spec == shipped[spec.name], where
    elif "pattern" in data:
        ArchConfig.from_dict(data)
    elif "seq_len" in data:
        training(ArchConfig.from_dict({"pattern": "M-", "d_model": 64}), data)
    elif "services" in data:  # a docker-compose override: it names services of docker-compose.yml
        compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
        assert set(data["services"]) <= set(compose["services"]), where
    else:
        pytest.fail(f"{where}: a YAML block this test does not know how to check: {sorted(data)}")


def _spec(path: Path):
    from nas.spec import load_spec

    return load_spec(path)


def test_the_shipped_specs_load():
    specs = {p.name: _spec(p) for p in sorted((REPO / "studies").glob("*.yaml"))}
    assert {"cpu-example.yaml", "gpu-example.yaml"} <= set(specs)
    assert specs["cpu-example.yaml"].resources.gpus == 0 and specs["gpu-example.yaml"].resources.gpus > 0


# ----- commands --------------------------------------------------------------------------------------
def parse(argv: list[str]) -> None:
    """Let the CLI parse argv as it would run it (names, types, ranges), without running the command."""
    from typer.main import get_command

    from nas.cli import app

    cmd = get_command(app)
    ctx = cmd.make_context("nas", list(argv))
    while hasattr(cmd, "get_command"):  # a group (nas, nas db): descend into the subcommand it names
        rest = [*ctx._protected_args, *ctx.args]  # the group's parser leaves them there
        assert rest, f"nas {shlex.join(argv)}: no subcommand"
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"nas {shlex.join(argv)}: no command {rest[0]!r}"
        ctx = sub.make_context(rest[0], rest[1:], parent=ctx)
        cmd = sub
    assert not ctx.args, f"nas {shlex.join(argv)}: unexpected arguments {ctx.args}"


def scratch_studies(home: Path) -> None:
    """The studies the docs name (my-study, S), finished, in the embedded storage under `home`."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from nas import record, store
    from nas.spec import StudySpec
    from search_spaces import ArchConfig

    arch = ArchConfig.from_dict({"pattern": "M-*-", "d_model": 32, "vocab_size": 64, "attention": {"heads": 2},
                                 "mamba2": {"d_state": 8, "head_dim": 16, "chunk_size": 16}}).to_dict()
    for name in ("my-study", "S"):
        spec = StudySpec.model_validate({"name": name, "space": "hybrid-ratio", "budget": {"trials": 13},
                                         "storage": f"sqlite:///{home / 'studies.db'}"})
        study = store.open_study(spec).study
        study.add_trials([
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, params={"layers": 8},
                distributions={"layers": CategoricalDistribution([8])},
                values=[0.1 + i / 20, 1000.0 - 10 * i],
                user_attrs={record.ARCH: arch, record.PATTERN: arch["pattern"]},
            )
            for i in range(13)
        ])


@pytest.mark.slow
def test_every_nas_command_in_the_docs_runs_or_parses(tmp_path, capsys, monkeypatch):
    from nas.spec import load_spec
    from search_spaces.presets import preset
    from workers.profile import load_profile

    home = tmp_path / ".nas"
    home.mkdir()
    env = {**os.environ, "NAS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for k in ("NAS_STORAGE", "NAS_TRACKING", "NAS_DATABASE_URL"):
        env.pop(k, None)
    monkeypatch.setenv("NAS_HOME", str(home))
    scratch_studies(home)
    (tmp_path / "winner.yaml").write_text(preset("bamba").to_yaml())  # `--arch winner.yaml`
    ran, parsed, seen = [], [], set()
    for where, argv in commands():
        key = tuple(argv)
        if key in seen:
            continue
        seen.add(key)
        line = "nas " + shlex.join(argv)
        if argv[0] in PARSED_ONLY:
            parse(argv)
            for i, a in enumerate(argv[1:], start=1):  # a spec (or a profile) the command reads: it must load
                if a.endswith((".yaml", ".yml")):
                    path = next((p for p in (tmp_path / a, REPO / a) if p.is_file()), None)
                    assert path is not None, f"{where}: {line} names {a}, which the repository does not hold"
                    if argv[i - 1] == "--profile":
                        load_profile(path)
                    else:
                        load_spec(path)
            parsed.append(line)
            continue
        r = subprocess.run([sys.executable, "-m", "nas.cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, f"{where}: {line}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        ran.append(line)
    with capsys.disabled():
        print(f"\ndocs: {len(ran)} nas commands run, {len(parsed)} parsed only (they train or need services):")
        print("  run:    " + "\n          ".join(ran))
        print("  parsed: " + "\n          ".join(parsed))
    assert ran and parsed


@pytest.mark.parametrize(
    "argv",
    [["eval", "--pattrn", "M-"], ["init", "a", "b"], ["serve", "--poll", "0"], ["dashboard", "--port", "x"],
     ["db", "downgrade"], ["submitt", "s.yaml"]],
    ids=lambda a: " ".join(a),
)
def test_parsing_refuses_what_the_cli_refuses(argv):
    """The parse-only check can fail: a misspelt option, an extra argument, a value out of range or of the
    wrong type, an unknown command."""
    import typer

    # typer carries its own click: its usage errors share BadParameter's base class
    usage_error = typer.BadParameter.__mro__[1]
    with pytest.raises((usage_error, AssertionError)):
        parse(argv)


def test_the_gpu_study_that_docs_gpu_studies_shows_is_committed_and_reads():
    """docs/gpu-studies.md: the H200 demo's two runs came back; their figures read from the stores and logs
    kept here, and `nas pareto`/`nas status` work on them."""
    from nas.reader import study_trials

    kept = REPO / "docs" / "gpu-studies"
    runs = {name: {r.number: r for r in study_trials(f"sqlite:///{kept / name / 'studies.db'}", "demo-gpu")}
            for name in ("demo-gpu-run1", "demo-gpu")}
    one, two = runs["demo-gpu-run1"], runs["demo-gpu"]
    assert len(one) == len(two) == 16 and [r.pattern for r in one.values()] == [r.pattern for r in two.values()]
    assert [sum(r.state == "COMPLETE" for r in run.values()) for run in (one, two)] == [8, 10]
    assert sum(r.job_seconds or 0 for r in one.values()) == pytest.approx(444, abs=1)  # the table's job time
    assert sum(r.job_seconds or 0 for r in two.values()) == pytest.approx(433, abs=1)
    assert [round(one[1].job_seconds), round(two[1].job_seconds)] == [56, 20]  # a first-rung job, both runs
    assert [round(one[0].values[1]), round(two[0].values[1])] == [4392, 1599]  # the same model's decode speed
    summary = subprocess.run(["bash", "benchmarks/gpu_demo.sh", "--summary", str(kept / "demo-gpu-run1"),
                              str(kept / "demo-gpu")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "after 156 s; 78 GPU samples, mean SM 74%, peak memory 37.1 GB" in summary.stdout
    assert "after 154 s; 77 GPU samples, mean SM 75%, peak memory 36.5 GB" in summary.stdout
    three = {r.number: r for r in study_trials(f"sqlite:///{kept / 'demo-gpu-run3' / 'studies.db'}", "demo-gpu")}
    assert [r.pattern for r in three.values()] == [r.pattern for r in one.values()]
    assert sum(r.state == "COMPLETE" for r in three.values()) == 11
    assert sum(r.job_seconds or 0 for r in three.values()) == pytest.approx(600, abs=1)
    assert [round(three[n].values[1]) for n in (0, 2)] == [4344, 7285]
    assert [round(f(three[n].job_seconds for n in range(5))) for f in (min, max)] == [77, 111]
    summary = subprocess.run(["bash", "benchmarks/gpu_demo.sh", "--summary", str(kept / "demo-gpu-run3")],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "after 202 s; 101 GPU samples, mean SM 53%, peak memory 34.8 GB" in summary.stdout
    env = {**os.environ, "NAS_HOME": str(kept / "demo-gpu"), "COLUMNS": "200"}
    for cmd in (["pareto", "demo-gpu"], ["status", "demo-gpu"]):
        r = subprocess.run([sys.executable, "-m", "nas.cli", *cmd], capture_output=True, text=True, env=env,
                           cwd=REPO, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    assert "D-*-D-*-D-*-D-*-" in r.stdout and "over the 11 trials that ran a job" in r.stdout
