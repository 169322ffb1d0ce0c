"""The `nas` command line.

Every command that reads user input turns a bad input into one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from rich.console import Console
from rich.table import Table

from nas import _format as fmt

app = typer.Typer(
    help="hybrid-nas: search hybrid attention / state-space language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# piped output (CI logs, `| less`) gets room for the wide tables instead of the 80-column default
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)

CONTEXTS = (4096, 131072, 1048576)


class UsageError(Exception):
    """A bad input: reported as one sentence, exit code 2."""


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report the project's input errors as one sentence and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from search_spaces import ConfigError

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
            target = fmt.parse_count(params)
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
        table.add_column(f"@{fmt.context(t)}", justify="right", no_wrap=True)
    for n in names:
        cfg = resolve_arch(preset=n, params=params, vocab_size=vocab_size)
        pc = param_counts(cfg)
        mem = [fmt.nbytes(cache_bytes(cfg, t).total) for t in CONTEXTS]
        mix = " ".join(f"{sym}{cfg.pattern.count(sym)}" for sym in SYMBOLS if sym in cfg.pattern)
        table.add_row(n, abbreviate(cfg.pattern, 24), mix, fmt.count(pc.total), fmt.count(pc.active), *mem)
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
        fam.add_row(family, str(cfg.count(family)), fmt.count(n))
    fam.add_row("embedding" + ("" if cfg.tie_embeddings else " + head"), "", fmt.count(pc.embedding))
    fam.add_row("[bold]total[/] (active)", "", f"{fmt.count(pc.total)} ({fmt.count(pc.active)})")
    out.print(fam)
    mem = Table(title="Per token and per sequence")
    mem.add_column("context", justify="right")
    mem.add_column("decode FLOPs/token", justify="right")
    mem.add_column("KV cache", justify="right")
    mem.add_column("state", justify="right")
    mem.add_column("total", justify="right")
    for t in CONTEXTS:
        cb = cache_bytes(cfg, t)
        mem.add_row(fmt.context(t), fmt.count(decode_flops_per_token(cfg, t)), fmt.nbytes(cb.kv),
                    fmt.nbytes(cb.state), fmt.nbytes(cb.total))
    out.print(mem)
    out.print(f"training: {fmt.count(train_flops_per_token(cfg, seq_len))} FLOPs/token at sequence length {seq_len}")


ProfileArg = Annotated[str, typer.Option("--profile", help="a proxy profile name (cpu-tiny, gpu-small, ...) or YAML path")]


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
    from nas.evaluation import print_scorecard, run_eval

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


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
