"""The `nas` command line: one command per user task, over the libraries of `nas`.

Every command that reads user input turns a bad input (the project's `ConfigError`, or a `UsageError`
of the command line itself) into one sentence on stderr and exit code 2. Each command imports the
library it drives when it runs, so that `nas --help` stays instant; the libraries import each other
at the top of their modules.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from nas import units


class _PlainFlags:
    """Help without a type beside each switch: `--pareto` takes no value, so `<bool>` only misleads."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class _Command(_PlainFlags, TyperCommand):
    pass


class _Group(_PlainFlags, TyperGroup):
    pass


app = typer.Typer(
    help="hybrid-nas: search hybrid attention / state-space language models.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# piped output (CI logs, `| less`) gets room for the wide tables instead of the 80-column default
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)

CONTEXTS = (4096, 131072, 1048576)


def quiet_libraries(verbose: bool = False) -> None:
    """Keep the libraries' own notices (MLflow creating its tables, Ray's token notice) off the terminal
    unless --verbose asks for them; warnings that matter reach the user through our own messages."""
    import logging
    import os

    if verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO")
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    # Ray resets its "ray" logger when imported; the levels of its children stay as set here
    for name, level in (("ray._private.authentication", logging.ERROR), ("alembic", logging.WARNING),
                        ("mlflow", logging.WARNING)):
        logging.getLogger(name).setLevel(level)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show the libraries' logs too (Ray, MLflow, Alembic)")
    ] = False,
) -> None:
    quiet_libraries(verbose)


class UsageError(Exception):
    """A bad input: reported as one sentence, exit code 2."""


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report the project's input errors as one sentence and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from search_spaces.config import ConfigError  # pydantic: loaded when a command runs, not for --help

        try:
            return fn(*args, **kwargs)
        except (ConfigError, UsageError) as e:
            fail(str(e))

    return wrapper


def resolve_arch(
    preset: str | None = None,
    arch: Path | None = None,
    pattern: str | None = None,
    d_model: int | None = None,
    params: str | None = None,
    vocab_size: int | None = None,
):
    """The architecture a command names: --preset, --arch FILE or --pattern with --d-model; --params scales it."""
    from search_spaces import ArchConfig
    from search_spaces.presets import preset as get_preset
    from search_spaces.scaling import scale

    given = [name for name, v in (("--preset", preset), ("--arch", arch), ("--pattern", pattern)) if v is not None]
    if len(given) != 1:
        raise UsageError(
            "name exactly one architecture: --preset NAME, --arch FILE or --pattern P --d-model D"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    if preset is not None:
        cfg = get_preset(preset)
    elif arch is not None:
        cfg = ArchConfig.load(arch)
    else:
        if d_model is None:
            raise UsageError("--pattern needs --d-model (the model width), e.g. --pattern 'M-M*-' --d-model 512")
        cfg = ArchConfig.from_dict({"pattern": pattern, "d_model": d_model})
    if params is not None:
        try:
            target = units.parse_count(params)
            cfg = scale(cfg, target, vocab_size=vocab_size)
        except ValueError as e:
            raise UsageError(str(e)) from None
    elif vocab_size is not None:
        cfg = cfg.replace(vocab_size=vocab_size)
    return cfg


PresetArg = Annotated[str | None, typer.Option("--preset", help="a preset name (see `nas presets`)")]
ArchArg = Annotated[Path | None, typer.Option("--arch", help="an ArchConfig YAML or JSON file")]
PatternArg = Annotated[str | None, typer.Option("--pattern", help="a layer pattern, e.g. 'M-M*-'")]
DModelArg = Annotated[int | None, typer.Option("--d-model", help="model width, with --pattern")]
ParamsArg = Annotated[str | None, typer.Option("--params", help="scale to this many parameters (2e6, 25M)")]


@app.command()
@friendly
def presets(
    name: Annotated[str | None, typer.Argument(help="print this preset only")] = None,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="print the preset as ArchConfig YAML")] = False,
    params: ParamsArg = None,
    vocab_size: Annotated[int | None, typer.Option("--vocab-size", help="with --params: proxy vocabulary")] = None,
) -> None:
    """The published hybrids and baselines: layout, size and inference memory (KV cache + state)."""
    from search_spaces.cost import cache_bytes, param_counts
    from search_spaces.pattern import SYMBOLS, abbreviate
    from search_spaces.presets import PRESETS

    if name is not None:
        cfg = resolve_arch(preset=name, params=params, vocab_size=vocab_size)
        if as_yaml:
            p = PRESETS[name]
            size = f", scaled to {params} parameters" if params else ""
            sys.stdout.write(f"# {p.name}: {p.title}{size}\n# source: {p.source}\n{cfg.to_yaml()}")
            return
        names = [name]
    else:
        if as_yaml:
            raise UsageError("--yaml prints one preset; name it, e.g. `nas presets jamba --yaml`")
        names = list(PRESETS)

    table = Table(
        title="Presets" + (f" scaled to {params} parameters" if params else " at published size"),
        caption="KV+state: inference memory per sequence at that context (bf16 KV cache, fp32 recurrent state)",
    )
    table.add_column("preset", style="bold", no_wrap=True)
    table.add_column("pattern", no_wrap=True)
    table.add_column("mix", no_wrap=True)
    table.add_column("params", justify="right")
    table.add_column("active", justify="right")
    for t in CONTEXTS:
        table.add_column(f"@{units.context(t)}", justify="right", no_wrap=True)
    for n in names:
        cfg = resolve_arch(preset=n, params=params, vocab_size=vocab_size)
        pc = param_counts(cfg)
        mem = [units.nbytes(cache_bytes(cfg, t).total) for t in CONTEXTS]
        mix = " ".join(f"{sym}{cfg.pattern.count(sym)}" for sym in SYMBOLS if sym in cfg.pattern)
        table.add_row(n, abbreviate(cfg.pattern, 24), mix, units.count(pc.total), units.count(pc.active), *mem)
    out.print(table)


@app.command()
@friendly
def cost(
    preset: PresetArg = None,
    arch: ArchArg = None,
    pattern: PatternArg = None,
    d_model: DModelArg = None,
    params: ParamsArg = None,
    vocab_size: Annotated[int | None, typer.Option("--vocab-size", help="replace the vocabulary size")] = None,
    seq_len: Annotated[int, typer.Option(help="training sequence length for the FLOPs")] = 4096,
) -> None:
    """The analytic cost of one architecture: parameters, FLOPs per token, inference memory by context."""
    from search_spaces.cost import cache_bytes, decode_flops_per_token, param_counts, train_flops_per_token

    cfg = resolve_arch(preset, arch, pattern, d_model, params, vocab_size)
    pc = param_counts(cfg)
    out.print(f"[bold]pattern[/] {cfg.pattern}  ({cfg.n_sublayers} sublayers, d_model {cfg.d_model})")
    fam = Table(title="Parameters")
    fam.add_column("family")
    fam.add_column("sublayers", justify="right")
    fam.add_column("params", justify="right")
    for family, n in pc.per_family.items():
        fam.add_row(family, str(cfg.count(family)), units.count(n))
    fam.add_row("embedding" + ("" if cfg.tie_embeddings else " + head"), "", units.count(pc.embedding))
    fam.add_row("[bold]total[/] (active)", "", f"{units.count(pc.total)} ({units.count(pc.active)})")
    out.print(fam)
    mem = Table(title="Per token and per sequence")
    mem.add_column("context", justify="right")
    mem.add_column("decode FLOPs/token", justify="right")
    mem.add_column("KV cache", justify="right")
    mem.add_column("state", justify="right")
    mem.add_column("total", justify="right")
    for t in CONTEXTS:
        cb = cache_bytes(cfg, t)
        mem.add_row(
            units.context(t),
            units.count(decode_flops_per_token(cfg, t)),
            units.nbytes(cb.kv),
            units.nbytes(cb.state),
            units.nbytes(cb.total),
        )
    out.print(mem)
    out.print(f"training: {units.count(train_flops_per_token(cfg, seq_len))} FLOPs/token at sequence length {seq_len}")


ProfileArg = Annotated[
    str, typer.Option("--profile", help="a proxy profile name (cpu-tiny, gpu-small, ...) or YAML path")
]


@app.command("eval")
@friendly
def eval_(
    preset: PresetArg = None,
    arch: ArchArg = None,
    pattern: PatternArg = None,
    d_model: DModelArg = None,
    profile: ProfileArg = "cpu-tiny",
    params: ParamsArg = None,
    seed: Annotated[int | None, typer.Option(help="override the profile's seed")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: the profile's)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the TrialResult here")] = None,
) -> None:
    """Train the proxy of one architecture and print its scorecard (quality, throughput, memory).

    A preset is scaled to the profile's proxy size; --arch and --pattern are used as given unless
    --params says otherwise.
    """
    from nas.display import print_scorecard, run_eval
    from workers.profile import load_profile

    prof = load_profile(profile)
    if preset is not None and params is None:
        params = str(prof.params)
    vocab = (prof.lm.vocab_size or 256) if preset is not None else None
    cfg = resolve_arch(preset, arch, pattern, d_model, params, vocab_size=vocab)
    result = run_eval(cfg, prof, seed=seed, device=device, console=out)
    print_scorecard(result, out)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_out.with_suffix(json_out.suffix + ".tmp")
        tmp.write_text(result.model_dump_json(indent=2))
        tmp.replace(json_out)
        out.print(f"wrote {json_out}")
    if result.status != "ok":
        raise typer.Exit(1)


@app.command()
@friendly
def init(
    name: Annotated[str, typer.Argument(help="the study's name; its spec goes to NAME.yaml")] = "my-study",
    out_path: Annotated[Path | None, typer.Option("--out", help="the file to write (default: NAME.yaml here)")] = None,
    gpus: Annotated[
        int | None, typer.Option("--gpus", min=0, help="write it for this many GPUs (default: this machine's)")
    ] = None,
) -> None:
    """Write a commented starter spec sized for this machine (GPUs or not); `nas run NAME.yaml` runs it."""
    from nas.starter import Machine, starter_spec, this_machine

    machine = this_machine()
    if gpus is not None:
        machine = Machine(cpus=machine.cpus, gpus=gpus)
    path = out_path if out_path is not None else Path(f"{name}.yaml")
    if path.exists():
        raise UsageError(f"{path} exists; choose another name or --out FILE (nas init never overwrites)")
    text = starter_spec(name, machine)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    out.print(f"wrote {path} for this machine ({machine.describe()}); run it with:  nas run {path}",
              markup=False, soft_wrap=True)


SpecArg = Annotated[Path, typer.Argument(help="a study spec (YAML)")]
StorageArg = Annotated[str | None, typer.Option("--storage", help="Optuna storage URL (default: the embedded SQLite)")]


@app.command()
@friendly
def run(
    spec: SpecArg,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="an existing Ray cluster (default: start one)")
    ] = None,
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="do not record to MLflow")] = False,
) -> None:
    """Run a study (or resume it: finished trials are kept, those in flight are run again)."""
    from nas.spec import load_spec

    study_spec = load_spec(spec)
    _run(study_spec, ray_address, track=not no_tracking, resume=f"nas run {spec}")


def _sigterm_as_interrupt() -> None:
    """A scheduler's or `kill`'s SIGTERM stops a run as Ctrl-C does: its trials are marked interrupted."""
    import contextlib
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)


def _run(study_spec, ray_address: str | None, track: bool = True, resume: str = "nas run SPEC") -> None:
    from nas.runner import run_study
    from nas.settings import mask_url

    space = study_spec.space if isinstance(study_spec.space, str) else "an inline space"
    if study_spec.kind == "fidelity":
        space = f"{len(study_spec.fidelity.archs)} trials of {study_spec.fidelity.source}"
    profile = study_spec.profile if isinstance(study_spec.profile, str) else "inline"
    objectives = ", ".join(f"{m} ({d[:3]})" for m, d in zip(study_spec.metrics, study_spec.directions))
    out.print(f"[bold]{study_spec.name}[/]: {study_spec.kind} on {space}, profile {profile}, objectives {objectives}")
    out.print(
        f"storage {mask_url(study_spec.storage_url)}"
        + (f" · tracking {mask_url(study_spec.tracking_url)}" if track else "")
    )
    _sigterm_as_interrupt()
    try:
        summary = run_study(study_spec, ray_address=ray_address, console=out, track=track)
    except KeyboardInterrupt:
        _interrupted(study_spec, resume)
    _print_summary(summary)
    if study_spec.kind == "ablation":
        _print_report(study_spec.storage_url, study_spec.name)
    elif study_spec.kind == "fidelity":
        _print_fidelity(study_spec.storage_url, study_spec.name)
    else:
        _print_pareto(study_spec.storage_url, study_spec.name, study_spec.metrics, study_spec.directions)


def _study_status(s) -> str:
    """A study's status for a table: `waiting` when its trials in flight wait for resources."""
    if s.status == "running" and s.waiting_for and s.counts["running"] and not s.finished:
        return "waiting"
    return s.status or ""


def _interrupted(study_spec, resume: str) -> None:
    """After Ctrl-C or SIGTERM: say what was kept and how to go on, exit 130."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this message short
    try:
        from nas.reader import study_summary

        c = study_summary(study_spec.storage_url, study_spec.name).counts
        kept = f"{c['complete']} complete, {c['interrupted']} interrupted (run again from where they were)"
    except Exception:  # the study may not exist yet, or its storage is away
        kept = "finished trials are kept"
    err.print(f"\n{study_spec.name}: interrupted; {kept}. Resume with:  {resume}", markup=False, soft_wrap=True)
    raise typer.Exit(130)


def _print_summary(s) -> None:
    c = s.counts
    out.print(
        f"[bold]{s.name}[/]: {c['complete']} complete, {c['failed']} failed, {c['infeasible']} infeasible"
        + (f", {c['pruned']} pruned" if c["pruned"] else "")
        + (f", {s.unfinished} unfinished" if s.unfinished else "")
        + f" in {s.elapsed_seconds / 60:.1f} min"
        + (f" (stopped: {s.stop_reason})" if s.stop_reason not in (None, "budget") else "")
    )


def _print_pareto(url: str, name: str, metrics: list[str], directions: list[str]) -> None:
    from nas.reader import pareto_trials

    rows = pareto_trials(url, name)
    spread = any(r["spread"] for r in rows)
    table = Table(
        title=f"Pareto set of {name} ({len(rows)} trial{'s' if len(rows) != 1 else ''})",
        caption="value ± its standard deviation over the trial's seeds" if spread else None,
    )
    table.add_column("trial", justify="right")
    table.add_column("pattern", no_wrap=True)
    for m, d in zip(metrics, directions):
        table.add_column(f"{m} {'↑' if d == 'maximize' else '↓'}", justify="right")
    table.add_column("params", justify="right")
    for r in rows:
        table.add_row(
            str(r["trial"]),
            r["pattern"],
            *(f"{r[m]:.4g}" + (f" ± {r['spread'][m]:.2g}" if m in r["spread"] else "") for m in metrics),
            units.count(r["params"]) if r["params"] else "",
        )
    out.print(table)


def _print_report(url: str, name: str) -> None:
    from nas.report import ablation_report

    rows = ablation_report(url, name)
    table = Table(title=f"Ablation {name}: mean ± 95% CI, and the difference from the base's level")
    for col in ("factor", "level", "metric", "runs", "mean ± CI", "vs base ± CI"):
        table.add_column(col, justify="right" if col in ("runs", "mean ± CI", "vs base ± CI") else "left")
    for r in rows:
        diff = "base" if r.is_base else ("" if r.diff is None else f"{r.diff:+.4g} ± {r.diff_ci:.2g}")
        table.add_row(r.factor, str(r.level), r.metric, str(r.n), f"{r.mean:.4g} ± {r.ci:.2g}", diff)
    out.print(table)


@app.command()
@friendly
def status(
    study: Annotated[str | None, typer.Argument(help="one study's trials (default: every study)")] = None,
    storage: StorageArg = None,
) -> None:
    """Studies and their progress; with a name, that study's trials."""
    from nas.reader import study_summaries, study_trials
    from nas.settings import settings

    url = storage or settings().storage
    if study is None:
        table = Table(title="Studies")
        cols = ("study", "kind", "status", "complete", "running", "failed", "infeasible", "budget", "best",
                "elapsed")
        for col in cols:
            table.add_column(col, justify="left" if col in ("study", "kind", "status", "best") else "right")
        notes = []
        for s in study_summaries(url):
            c = s.counts
            best = "  ".join(f"{m}={v:.4g}" for m, v in s.best.items())
            table.add_row(
                s.name,
                s.kind,
                _study_status(s),
                str(c["complete"]),
                str(c["running"] + c["paused"]),
                str(c["failed"]),
                str(c["infeasible"]),
                str(s.budget_trials or "-"),
                best,
                f"{s.elapsed_seconds / 60:.1f} min",
            )
            if s.waiting_for:
                notes.append(f"{s.name}: {s.waiting_for}")
            if s.status == "interrupted":
                how = "the `nas fidelity` command that made it" if s.kind == "fidelity" else "`nas run` and its spec"
                notes.append(f"{s.name}: interrupted with {c['interrupted']} trial(s) in flight; resume it with {how}")
        out.print(table)
        for note in notes:
            out.print(note, markup=False, soft_wrap=True)
        return
    rows = study_trials(url, study)
    table = Table(title=f"Trials of {study}")
    for col in ("trial", "status", "pattern", "values", "job time", "note"):
        table.add_column(col, justify="right" if col in ("trial", "job time") else "left", no_wrap=col == "pattern")
    for r in rows:
        values = "  ".join(f"{v:.4g}" for v in r.values) if r.values else ""
        note = (r.failure or {}).get("reason", "") if r.state == "FAIL" else ("Pareto" if r.pareto else "")
        if r.state == "RUNNING" and r.progress:
            note = f"{r.progress['task']} {r.progress['step']}/{r.progress['steps']}"
        if r.waiting_for:
            note = r.waiting_for
        spent = f"{r.job_seconds:.0f} s" if r.job_seconds else ""
        table.add_row(str(r.number), r.status, r.pattern or "", values, spent, note)
    out.print(table)
    ran = [r.job_seconds for r in rows if r.job_seconds]
    if ran:
        out.print(f"job time: {sum(ran):,.0f} s over the {len(ran)} trials that ran a job (every rung and seed; "
                  "a repeated architecture costs nothing)", markup=False, soft_wrap=True)


@app.command()
@friendly
def pareto(study: Annotated[str, typer.Argument(help="the study")], storage: StorageArg = None) -> None:
    """The Pareto set of a study's complete trials."""
    from nas.reader import study_summary
    from nas.settings import settings

    url = storage or settings().storage
    s = study_summary(url, study)
    _print_pareto(url, study, s.metrics, s.directions)


def _print_fidelity(url: str, name: str, metrics: list[str] | None = None, without: list[str] | None = None) -> None:
    from nas.fidelity import fidelity_report

    rows = fidelity_report(url, name, metrics, without)
    what = "metric" if metrics else "objective"
    table = Table(title=f"Fidelity of {name}: each {what}'s rank correlation between the two sizes")
    for col in (what, "pairs", "Spearman ρ", "95% interval (bootstrap)"):
        table.add_column(col, justify="left" if col == what else "right")
    for r in rows:
        shown = math.isfinite(r.rho)
        table.add_row(r.metric, str(r.pairs), f"{r.rho:+.2f}" if shown else "—",
                      f"{r.low:+.2f} … {r.high:+.2f}" if math.isfinite(r.low) else "—")
    out.print(table)
    if not rows or not rows[0].trials or metrics == ["all"]:  # every metric's pairs: too wide to read
        return
    from nas.reader import study_meta

    source = study_meta(url, name).spec["fidelity"]["source"]
    patterns = {n: p for r in rows for n, p in zip(r.trials, r.patterns, strict=True)}
    there = "there (± sd over its seeds)" if any(r.source_sd for r in rows) else "there"
    pairs = Table(title=f"Each re-trained trial of {source}: its value {there} → here")
    pairs.add_column("trial", justify="right")
    pairs.add_column("pattern", no_wrap=True)
    for r in rows:
        pairs.add_column(r.metric, justify="right")
    values = {r.metric: dict(zip(r.trials, zip(r.source, r.larger, r.source_sd or [None] * r.pairs, strict=True),
                                 strict=True)) for r in rows}

    def cell(metric: str, n: int) -> str:
        if n not in values[metric]:
            return ""
        there, here, sd = values[metric][n]
        return f"{there:.4g}" + (f" ± {sd:.2g}" if sd is not None else "") + f" → {here:.4g}"

    for n in sorted({n for r in rows for n in r.trials}):
        cells = [cell(r.metric, n) for r in rows]
        pairs.add_row(str(n), patterns[n], *cells)
    out.print(pairs)


@app.command()
@friendly
def fidelity(
    study: Annotated[str, typer.Argument(help="the study whose ranking to test")],
    profile: Annotated[str, typer.Option("--profile", help="the larger profile to re-train at (name or YAML path)")],
    top: Annotated[int, typer.Option("--top", min=0, help="the Pareto set's best trials to re-train")] = 8,
    sample: Annotated[int, typer.Option("--sample", min=0, help="other complete trials, drawn at random")] = 8,
    name: Annotated[str | None, typer.Option("--name", help="the new study's name (default: STUDY-at-PROFILE)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="the random draw's seed")] = 0,
    seeds: Annotated[int | None, typer.Option("--seeds", min=1, help="seeds per architecture at the larger size "
                                              "(default: the study's)")] = None,
    report_only: Annotated[bool, typer.Option("--report", help="print the fidelity study's report so far; "
                                                "train nothing")] = False,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="with --report: a metric to correlate instead "
                                                     "of the objectives (repeat it), e.g. lm_loss or acc.mqar; all: "
                                                     "the objectives and every quality metric")] = None,
    without: Annotated[list[str] | None, typer.Option("--without", help="with --report: also the recall mean without "
                                                      "this task (repeat it), as a profile without it would score the "
                                                      "same trainings, e.g. mqar")] = None,
    storage: StorageArg = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="an existing Ray cluster")] = None,
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="do not record to MLflow")] = False,
) -> None:
    """Test a study's ranking at a larger size: Spearman ρ per objective.

    Re-trains the study's Pareto set and a random sample of its other trials at the larger profile, as a
    study of its own (run the command again to resume it), and reports each objective's rank correlation
    between the two sizes with a bootstrap 95% interval."""
    from nas.fidelity import fidelity_spec
    from nas.settings import settings
    from search_spaces.config import ConfigError

    if metric and not report_only:
        raise ConfigError("--metric picks what a report correlates; add --report (a run reports its objectives)")
    if without and not report_only:
        raise ConfigError("--without recomputes a report's recall mean; add --report")
    url = storage or settings().storage
    if report_only:
        from workers.profile import load_profile

        _print_fidelity(url, name or f"{study}-at-{load_profile(profile).name}", metric or None, without or None)
        return
    spec = fidelity_spec(url, study, profile, top=top, sample=sample, name=name, seed=seed, seeds=seeds)
    again = f"nas fidelity {study} --profile {profile} --top {top} --sample {sample} --seed {seed}"
    again += (f" --seeds {seeds}" if seeds else "") + (f" --name {name}" if name else "")
    _run(spec, ray_address, track=not no_tracking, resume=again)


@app.command()
@friendly
def seeds(
    study: Annotated[str, typer.Argument(help="a study that trained two seeds or more (`seeds: N` in its spec)")],
    metric: Annotated[list[str] | None, typer.Option("--metric", help="a metric to show (repeat it); default: "
                                                     "the objectives, LM loss and every recall accuracy")] = None,
    archs: Annotated[bool, typer.Option("--archs", help="also each architecture's mean ± sd over its seeds")] = False,
    storage: StorageArg = None,
) -> None:
    """How much each score moves between seeds, and whether the seeds rank the architectures alike.

    Per metric: the standard deviation over seeds (the median over architectures), the architectures'
    spread against it, and Kendall's τ between the rankings of each pair of seeds."""
    from nas.seeds import arch_spreads, seed_rows, seed_values
    from nas.settings import settings

    data = seed_values(storage or settings().storage, study)
    rows = seed_rows(data, metric or None)
    table = Table(title=f"Seed noise of {study}: {rows[0].archs} architectures, {rows[0].seeds} seeds",
                  caption="sd: the median over architectures of the standard deviation over seeds; "
                          "separation: the spread of the architectures' means ÷ the seed noise (below ~1 a ranking "
                          "is mostly luck); τ: Kendall's rank correlation between two seeds' rankings")
    for col in ("metric", "archs", "mean", "sd", "sd ÷ value", "separation", "τ (mean)", "τ (lowest pair)"):
        table.add_column(col, justify="left" if col == "metric" else "right")

    def num(x: float, fmt: str) -> str:
        return format(x, fmt) if math.isfinite(x) else "—"

    for r in rows:
        table.add_row(r.metric, str(r.archs), num(r.mean, ".4g"), num(r.sd, ".2g"), num(r.rel_sd, ".1%"),
                      num(r.separation, ".1f"), num(r.tau, "+.2f"), num(r.tau_min, "+.2f"))
    out.print(table)
    if not archs:
        return
    shown = [r.metric for r in rows]
    each = Table(title=f"Each architecture of {study}: its mean ± sd over seeds")
    each.add_column("trial / cell", no_wrap=True)
    for m in shown:
        each.add_column(m, justify="right")
    for label, cells in arch_spreads(data, shown):
        each.add_row(label, *(f"{cells[m][0]:.4g} ± {cells[m][1]:.2g}" if m in cells else "" for m in shown))
    out.print(each)


@app.command()
@friendly
def report(study: Annotated[str, typer.Argument(help="an ablation study")], storage: StorageArg = None) -> None:
    """An ablation's effects: per factor level, each objective's mean and 95% CI, and the change from the base."""
    from nas.settings import settings

    _print_report(storage or settings().storage, study)


@app.command()
@friendly
def delete(study: Annotated[str, typer.Argument(help="the study")], storage: StorageArg = None) -> None:
    """Delete a study and its trials from the Optuna storage (its MLflow runs stay)."""
    from nas.store import delete_study

    delete_study(study, storage)
    out.print(f"deleted {study}")


@app.command()
@friendly
def demo(
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="an existing Ray cluster")] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="the GPU demo: 16 gpu-quick trials, four sharing a GPU")] = False,
) -> None:
    """Run the bundled demo study on the embedded default (SQLite, a local Ray, local MLflow)."""
    from nas.demo import findings
    from nas.spec import load_spec
    from search_spaces.config import ConfigError

    if gpu and ray_address is None:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("nas demo --gpu needs a CUDA GPU, and this machine has none; run `nas demo` for "
                              "the CPU demo, or pass --ray-address of a Ray cluster with GPUs")
    spec = load_spec(Path(__file__).parent / "studies" / ("demo-gpu.yaml" if gpu else "demo.yaml"))
    _run(spec, ray_address, resume="nas demo" + (" --gpu" if gpu else ""))
    out.print("\n" + "\n".join(findings(spec)), highlight=False, markup=False)
    out.print(f"\nOpen the dashboard:  [bold]nas dashboard[/]   ·   the same table again:  "
              f"[bold]nas pareto {spec.name}[/]   ·   what each trial cost:  [bold]nas status {spec.name}[/]")
    out.print(f"The trials' runs in MLflow:  [bold]mlflow ui --backend-store-uri {spec.tracking_url}[/]",
              soft_wrap=True)


@app.command("export")
def export_(
    preset: Annotated[str | None, typer.Option("--preset", help="a preset name (see `nas presets`)")] = None,
    arch: Annotated[Path | None, typer.Option("--arch", help="an ArchConfig YAML or JSON file")] = None,
    study: Annotated[str | None, typer.Option("--study", help="a study, with --trial N or --pareto")] = None,
    trial: Annotated[int | None, typer.Option("--trial", help="with --study: this trial")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="with --study: its whole Pareto front")] = False,
    storage: Annotated[str | None, typer.Option("--storage", help="with --study: Optuna storage URL")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="hf, megatron or yaml")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="with --format hf: force a model type (jamba, bamba, ...)")
    ] = None,
    scale_to: Annotated[
        str | None, typer.Option("--scale-to", help="resize to this many parameters (2e6, 1.5B), layout kept")
    ] = None,
    vocab_size: Annotated[int | None, typer.Option("--vocab-size", help="replace the vocabulary")] = None,
    training: Annotated[
        Path | None, typer.Option("--training", help="with --format yaml or megatron: YAML of training settings")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="the directory to write (made if needed)")] = None,
) -> None:
    """Export an architecture as a training config: a transformers config.json, Megatron-LM arguments or YAML.

    --format hf picks the transformers class that can express the layout (--target forces one); the
    directory then loads with AutoConfig.from_pretrained. Nothing is written when the format cannot hold it.
    """
    import yaml

    from nas.export import FORMATS, render_study, render_with_note, write
    from nas.settings import settings
    from search_spaces.config import ConfigError

    try:
        if fmt is None:
            raise UsageError(f"name the format with --format ({', '.join(FORMATS)})")
        if fmt not in FORMATS:
            raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        given = [n for n, v in (("--preset", preset), ("--arch", arch), ("--study", study)) if v is not None]
        if len(given) != 1:
            raise UsageError(
                "name exactly one architecture: --arch FILE, --preset NAME, --study S --trial N or "
                "--study S --pareto"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if study is None and (trial is not None or pareto):
            raise UsageError("--trial and --pareto choose trials of a study; add --study NAME")
        if study is not None and (trial is None) == (not pareto):
            raise UsageError("with --study, name one trial with --trial N or the whole front with --pareto")
        if out_dir is None:
            raise UsageError("name the directory to write with --out DIR")
        try:
            size = units.parse_count(scale_to) if scale_to is not None else None
        except ValueError as e:
            raise UsageError(f"--scale-to: {e}") from None
        overrides = None
        if training is not None:
            try:
                overrides = yaml.safe_load(training.read_text()) or {}
            except OSError as e:
                raise UsageError(f"cannot read the training settings {training}: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise UsageError(f"the training settings {training} are not valid YAML: {e}") from None
            if not isinstance(overrides, dict):
                raise UsageError(f"the training settings {training} must be a mapping (seq_len, tokens, ...)")
        kwargs = {"scale_to": size, "training": overrides, "target": target, "vocab_size": vocab_size}

        skipped: list[str] = []
        if study is None:
            files, how = render_with_note(resolve_arch(preset=preset, arch=arch), fmt, **kwargs)
            hows = [how.replace("DIR", str(out_dir))]
        else:
            done = render_study(storage or settings().storage, study, fmt, trial, **kwargs)
            files = done.files
            hows = [
                how.replace("DIR", str(out_dir if trial is not None else out_dir / f"trial-{number}"))
                for number, how in done.notes.items()
            ]
            skipped = done.skipped_lines()
        written = write(out_dir, files)
    except (ConfigError, UsageError) as e:
        fail(str(e))
        return
    names = sorted(str(p.relative_to(out_dir)) for p in written)
    out.print(f"wrote {out_dir}: {', '.join(names)}", markup=False, soft_wrap=True)
    for how in dict.fromkeys(hows):
        out.print(how, markup=False, soft_wrap=True)
    if skipped:
        err.print(
            f"not written ({len(skipped)} of the Pareto trials; --format yaml holds every architecture):",
            markup=False,
        )
        for line in skipped:
            err.print(f"  {line}", markup=False, soft_wrap=True)


# ----- service mode: the study queue and its scheduler (nas/queue.py, nas/scheduler.py) -----------------
def _when(t) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t is not None else ""


def _queued_row(s) -> str:
    return f"study {s.id} ({s.name}): {s.label}"


@app.command()
@friendly
def submit(
    spec: SpecArg,
    priority: Annotated[int, typer.Option("--priority", help="higher runs first")] = 0,
    by: Annotated[str | None, typer.Option("--by", help="who submits it (default: your user name)")] = None,
) -> None:
    """Submit a study to the service's queue (NAS_DATABASE_URL); a scheduler (`nas serve`) runs it."""
    from nas.service import queue
    from nas.spec import load_spec

    study_spec = load_spec(spec)
    study_id = queue.submit(study_spec, priority=priority, submitted_by=by)
    out.print(
        f"submitted study {study_id} ({study_spec.name}) with priority {priority}; follow it with `nas show {study_id}`"
    )


@app.command("list")
@friendly
def list_() -> None:
    """The service's queue: every submitted study, newest first."""
    from nas.service import queue

    table = Table(title="Queue")
    for col in ("id", "study", "status", "priority", "by", "submitted", "started", "finished", "scheduler"):
        table.add_column(col, justify="right" if col in ("id", "priority") else "left", no_wrap=col != "study")
    for s in queue.list_studies():
        table.add_row(
            str(s.id),
            s.name,
            s.label,
            str(s.priority),
            s.submitted_by or "",
            _when(s.submitted_at),
            _when(s.started_at),
            _when(s.finished_at),
            s.scheduler if s.status == "running" else "",
        )
    out.print(table)


@app.command()
@friendly
def show(study: Annotated[str, typer.Argument(help="a queue id, or a study name (its newest one)")]) -> None:
    """One submitted study: its status, its trials so far and its event log."""
    from nas.service import queue

    s = queue.get_study(study)
    out.print(
        f"[bold]{_queued_row(s)}[/]  priority {s.priority}, submitted by {s.submitted_by} at {_when(s.submitted_at)}"
    )
    if s.started_at:
        finished = f", finished {_when(s.finished_at)}" if s.finished_at else ""
        running = s.status == "running"
        owner = f", scheduler {s.scheduler} (heartbeat {_when(s.heartbeat_at)})" if running else ""
        out.print(
            f"started {_when(s.started_at)}{finished}{owner}" + (f", {s.attempts} runs" if s.attempts > 1 else "")
        )
    if s.error:
        out.print(f"[red]error:[/] {s.error}", soft_wrap=True)
    out.print(
        f"Optuna study {s.optuna_study_name}"
        + (f" · MLflow experiment {s.mlflow_experiment_id}" if s.mlflow_experiment_id else "")
    )
    if s.started_at:
        try:  # its trials, from the service's Optuna storage
            from nas.reader import study_summary

            storage, _ = queue.service_urls(queue.database_url())
            summary = study_summary(storage, s.optuna_study_name)
            c = summary.counts
            out.print(
                f"trials: {c['complete']} complete, {summary.unfinished} unfinished, "
                f"{c['failed']} failed, {c['infeasible']} infeasible"
                + (f", {c['pruned']} pruned" if c["pruned"] else "")
                + (f", {c['interrupted']} interrupted" if c["interrupted"] else "")
            )
            if summary.waiting_for:
                out.print(summary.waiting_for, style="yellow", markup=False, soft_wrap=True)
        except Exception as e:
            out.print(f"[dim]trials: not readable here ({type(e).__name__})[/]")
    table = Table(title="Events")
    for col in ("time", "event", "scheduler", "message"):
        table.add_column(col, no_wrap=col != "message")
    for e in queue.events(s.id):
        table.add_row(_when(e.time), e.kind, e.scheduler or "", (e.message.splitlines() or [""])[0])
    out.print(table)


QueueIdArg = Annotated[str, typer.Argument(help="a queue id, or a study name (its newest submission)")]


@app.command()
@friendly
def cancel(study: QueueIdArg) -> None:
    """Cancel a study: queued or paused at once; running within seconds (its trials in flight are failed)."""
    from nas.service import queue

    out.print(_queued_row(queue.cancel(study)))


@app.command()
@friendly
def pause(study: QueueIdArg) -> None:
    """Pause a study: its trials in flight stop and wait for `nas resume`, which continues them."""
    from nas.service import queue

    out.print(_queued_row(queue.pause(study)))


@app.command()
@friendly
def resume(study: QueueIdArg) -> None:
    """Queue a paused (or failed, or cancelled) study again; it goes on where its trials left off."""
    from nas.service import queue

    out.print(_queued_row(queue.resume(study)))


@app.command()
@friendly
def serve(
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="the Ray cluster (default: NAS_RAY_ADDRESS, else a local Ray instance)",
        ),
    ] = None,
    stale_after: Annotated[
        float,
        typer.Option(
            "--stale-after",
            min=1.0,
            help="seconds without a heartbeat before a running study is taken over",
        ),
    ] = 30.0,
    heartbeat: Annotated[
        float | None,
        typer.Option(
            "--heartbeat",
            min=0.1,
            help="seconds between heartbeats (default: --stale-after / 4, at most 5)",
        ),
    ] = None,
    poll: Annotated[
        float,
        typer.Option(
            "--poll",
            min=0.1,
            help="seconds between looks at an empty queue",
        ),
    ] = 2.0,
    exit_when_idle: Annotated[
        bool,
        typer.Option(
            "--exit-when-idle",
            help="stop when the queue is empty",
        ),
    ] = False,
    max_studies: Annotated[
        int | None,
        typer.Option(
            "--max-studies",
            min=1,
            help="stop after this many studies",
        ),
    ] = None,
) -> None:
    """Run the queue: claim studies by priority, one at a time, and run them on the Ray cluster.

    Start several schedulers (here or on other hosts, against one database) to run several studies at once.
    """
    from nas.service import queue
    from nas.service.scheduler import Scheduler
    from nas.settings import settings

    url = queue.database_url()
    if url is None:
        raise UsageError(
            "nas serve needs the queue's database: set NAS_DATABASE_URL (e.g. "
            "postgresql+psycopg://nas:PASSWORD@127.0.0.1:5432/nas) or database_url in "
            "~/.config/hybrid-nas/config.toml"
        )
    address = ray_address or settings().ray_address
    Scheduler(
        url, ray_address=address, stale_after=stale_after, heartbeat_every=heartbeat, poll_every=poll, console=out
    ).serve(exit_when_idle=exit_when_idle, max_studies=max_studies)


db_app = typer.Typer(help="The queue's database schema (Alembic migrations).", cls=_Group, no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@friendly
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="the revision to migrate to")] = "head",
    sql: Annotated[bool, typer.Option("--sql", help="print the SQL instead of running it")] = False,
) -> None:
    """Create or migrate the queue's tables (schedulers and `nas submit` do this on first use)."""
    from nas.service import db
    from nas.settings import mask_url, settings

    url = settings().database_url
    if url is None:
        raise UsageError("no queue database is configured: set NAS_DATABASE_URL or database_url in the config file")
    if sql:
        db.upgrade_sql(url, revision)
        return
    db.upgrade(url, revision, force=True)
    out.print(f"{mask_url(url)} is at revision {db.current_revision(url)}")


@db_app.command("current")
@friendly
def db_current() -> None:
    """The queue database's schema revision, and the newest one this version of nas knows."""
    from nas.service import db
    from nas.settings import settings

    url = settings().database_url
    if url is None:
        raise UsageError("no queue database is configured: set NAS_DATABASE_URL or database_url in the config file")
    try:
        rev = db.current_revision(url)
    except Exception as e:
        raise db.unreachable(url, e) from None
    out.print(f"revision {rev or 'none (run `nas db upgrade`)'}; newest {db.head_revision()}")


@app.command()
@friendly
def dashboard(
    host: Annotated[str, typer.Option("--host", help="address to serve on (default: this machine only)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="port to serve on")] = 8501,
    storage: StorageArg = None,
    tracking: Annotated[
        str | None, typer.Option("--tracking", help="MLflow tracking URL (default: the embedded store)")
    ] = None,
) -> None:
    """Serve the dashboard: live studies, Pareto fronts, ablations, submitting specs and exporting trials."""
    import importlib.util
    import os
    import socket

    from nas.settings import mask_url, settings

    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        raise UsageError("the dashboard needs streamlit and plotly; pip install 'hybrid-nas[dashboard]'")
    found = importlib.util.find_spec("dashboard")  # located, not imported: `nas` never imports the dashboard
    folder = Path(found.origin).parent if found and found.origin else Path(__file__).parents[1] / "dashboard"
    if not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, not {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UsageError(f"cannot serve on {host}:{port} ({e.strerror}); choose another --port or --host") from None
    env = dict(os.environ)
    if storage:
        env["NAS_STORAGE"] = storage
    if tracking:
        env["NAS_TRACKING"] = tracking
    out.print(
        f"dashboard on http://{host}:{port} · storage {mask_url(storage or settings().storage)} · Ctrl-C stops it",
        soft_wrap=True,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"note: {host} reaches beyond this machine: anyone who reaches the port can read the studies, and "
            "actions need a sign-in (`nas user add NAME`); serve it behind a reverse proxy with TLS "
            "(docs/service.md)",
            soft_wrap=True,
        )
    sys.stdout.flush()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(folder / "app.py"),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--server.maxUploadSize",  # megabytes; a spec is at most 256 KB
        "1",
    ]
    os.execve(sys.executable, cmd, env)  # Streamlit takes this process over: signals reach it


user_app = typer.Typer(help="The dashboard's users: who may sign in to submit, pause, resume and cancel.",
                        no_args_is_help=True)
app.add_typer(user_app, name="user")
UsersFileArg = Annotated[
    Path | None, typer.Option("--file", help="the users file (default: NAS_DASHBOARD_USERS, else beside the config)")
]


@user_app.command("add")
@friendly
def user_add(
    name: Annotated[str, typer.Argument(help="the name the dashboard records as the submitter")],
    token: Annotated[bool, typer.Option("--token", help="a random token instead of a password you type")] = False,
    file: UsersFileArg = None,
) -> None:
    """Add a dashboard user (or give one a new password): only its scrypt hash is written."""
    from nas import auth
    from nas.settings import settings

    path = file or settings().users_file
    if token:
        secret = auth.new_token()
    else:
        secret = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    auth.add_user(path, name, secret)
    out.print(f"{name} can sign in to the dashboard; {path} holds the hash", soft_wrap=True)
    if token:
        out.print(f"token (shown once): {secret}", markup=False, soft_wrap=True)


@user_app.command("remove")
@friendly
def user_remove(name: Annotated[str, typer.Argument(help="the user")], file: UsersFileArg = None) -> None:
    """Remove a dashboard user."""
    from nas import auth
    from nas.settings import settings

    path = file or settings().users_file
    auth.remove_user(path, name)
    out.print(f"{name} removed from {path}", soft_wrap=True)


@user_app.command("list")
@friendly
def user_list(file: UsersFileArg = None) -> None:
    """The dashboard's users."""
    from nas import auth
    from nas.settings import settings

    path = file or settings().users_file
    names = sorted(auth.read_users(path))
    out.print(f"{path}: {', '.join(names) if names else 'no users (the dashboard is read-only)'}", soft_wrap=True)


for _typer in (app, db_app, user_app):  # every command gets the plain-flag help
    for _info in _typer.registered_commands:
        if _info.cls in (None, TyperCommand):
            _info.cls = _Command


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
