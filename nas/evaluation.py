"""`nas eval`: one proxy evaluation in the foreground, with a progress bar and a scorecard."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nas import _format as fmt
from search_spaces import ArchConfig, abbreviate

__all__ = ["print_scorecard", "run_eval"]


def run_eval(cfg: ArchConfig, profile, *, seed: int | None = None, device: str | None = None,
             console: Console | None = None):
    from workers.evaluate import evaluate

    bars = Progress(
        TextColumn("[bold]{task.description:>22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}  {task.fields[tps]} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    ids: dict[str, int] = {}

    def report(p) -> None:
        if p.task not in ids:
            ids[p.task] = bars.add_task(p.task, total=p.steps, loss=p.loss, tps="-")
        bars.update(ids[p.task], completed=p.step, loss=p.loss, tps=fmt.count(p.tokens_per_s))

    with bars:
        return evaluate(cfg, profile, seed=seed, device=device, progress=report)


def print_scorecard(r, console: Console) -> None:
    t = Table(title=f"{abbreviate(r.pattern, 40)}  ·  profile {r.profile}  ·  {r.device}", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("status", "[green]ok" if r.status == "ok" else f"[red]{r.status}")
    if r.failure is not None:
        t.add_row("failure", f"{r.failure.kind}: {r.failure.reason}")
    t.add_row("params (active)", f"{fmt.count(r.params)} ({fmt.count(r.active_params)})")
    if r.lm is not None:
        t.add_row("LM validation loss", f"{r.lm.val_loss:.4f}")
        if r.lm.bits_per_byte is not None:
            t.add_row("bits per byte", f"{r.lm.bits_per_byte:.4f}")
        t.add_row("training tokens/s", fmt.count(r.lm.train_tokens_per_s))
    for name, s in r.tasks.items():
        t.add_row(f"accuracy: {name}", f"{s.accuracy:.3f}")
    if r.synthetic_accuracy is not None:
        t.add_row("[bold]synthetic mean accuracy", f"[bold]{r.synthetic_accuracy:.3f}")
    for tp in r.throughput:
        ctx = fmt.context(tp.context)
        t.add_row(f"prefill tokens/s @{ctx}", fmt.count(tp.prefill_tokens_per_s))
        t.add_row(f"decode tokens/s @{ctx}", fmt.count(tp.decode_tokens_per_s))
        t.add_row(f"KV+state bytes @{ctx}", fmt.nbytes(tp.kv_state_bytes))
    if r.peak_memory_bytes is not None:
        kind = "GPU allocated" if r.memory_kind == "cuda_allocated" else "process RSS"
        t.add_row(f"peak memory ({kind})", fmt.nbytes(r.peak_memory_bytes))
    t.add_row("wall time", f"{r.wall_seconds:.1f} s")
    console.print(t)
