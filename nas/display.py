"""What a person sees in a terminal: a study's progress while it runs, and one evaluation's bars and scorecard.

    display = StudyDisplay(console, spec, budget=16)   # the runner drives it
    result = run_eval(cfg, profile, console=console)   # `nas eval`: bars per task, then
    print_scorecard(result, console)                   # quality, throughput and memory in one table
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nas import record, units
from search_spaces import ArchConfig, abbreviate

__all__ = ["StudyDisplay", "hms", "print_scorecard", "run_eval"]


class StudyDisplay:
    """Rich progress: trials done / running / failed, best so far, ETA; one line per job in flight."""

    def __init__(self, console, spec, budget: int | None):
        self.spec = spec
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.overall = self.progress.add_task(f"[bold]{spec.name}", total=budget, info="")
        self.rows: dict[int, int] = {}
        self.progress.start()

    def started(self, number: int, pattern: str, rung: int, rungs: int) -> None:
        label = f"  trial {number:<3d} {abbreviate(pattern, 24):24s}" + (f" r{rung + 1}/{rungs}" if rungs > 1 else "")
        if number in self.rows:
            self.progress.remove_task(self.rows.pop(number))
        self.rows[number] = self.progress.add_task(label, total=None, info="starting")

    def update(self, number: int, r: dict) -> None:
        if number in self.rows:
            self.progress.update(
                self.rows[number], total=r["steps"], completed=r["step"], info=f"{r['task']} loss {r['loss']:.3f}"
            )

    def finished(self, number: int, what: str, values=None) -> None:
        if number in self.rows:
            self.progress.remove_task(self.rows.pop(number))
        shown = ""
        if values is not None:
            shown = "  " + "  ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.metrics, values))
        self.progress.console.print(f"trial {number}: {what}{shown}")

    def note(self, text: str) -> None:
        self.progress.console.print(text, style="dim")

    def tick(self, counts: dict[str, int], elapsed: float, best: dict[str, float]) -> None:
        done = record.finished(counts) + counts["paused"]
        rate = elapsed / done if done else None
        total = self.progress.tasks[self.overall].total
        eta = ""
        if rate and total:
            eta = f"  ETA {hms(rate * max(0, total - done) / max(1, self.spec.concurrency))}"
        info = (
            f"done {counts['complete']}  running {counts['running']}  failed {counts['failed']}"
            f"  infeasible {counts['infeasible']}"
            + (f"  pruned {counts['pruned']}" if counts["pruned"] else "")
            + "".join(f"  best {m} {v:.4g}" for m, v in best.items())
            + eta
        )
        self.progress.update(self.overall, completed=done, info=info)

    def close(self) -> None:
        self.progress.stop()


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


def run_eval(cfg: ArchConfig, profile, *, seed: int | None = None, device: str | None = None,
             console: Console | None = None):
    from workers.evaluate import evaluate  # torch: loaded when an evaluation runs

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
        bars.update(ids[p.task], completed=p.step, loss=p.loss, tps=units.count(p.tokens_per_s))

    with bars:
        return evaluate(cfg, profile, seed=seed, device=device, progress=report)


def print_scorecard(r, console: Console) -> None:
    t = Table(title=f"{abbreviate(r.pattern, 40)}  ·  profile {r.profile}  ·  {r.device}", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("status", "[green]ok" if r.status == "ok" else f"[red]{r.status}")
    if r.failure is not None:
        t.add_row("failure", f"{r.failure.kind}: {r.failure.reason}")
    t.add_row("params (active)", f"{units.count(r.params)} ({units.count(r.active_params)})")
    if r.lm is not None:
        t.add_row("LM validation loss", f"{r.lm.val_loss:.4f}")
        if r.lm.bits_per_byte is not None:
            t.add_row("bits per byte", f"{r.lm.bits_per_byte:.4f}")
        t.add_row("training tokens/s", units.count(r.lm.train_tokens_per_s))
    for name, s in r.tasks.items():
        t.add_row(f"accuracy: {name}", f"{s.accuracy:.3f}")
    if r.synthetic_accuracy is not None:
        t.add_row("[bold]synthetic mean accuracy", f"[bold]{r.synthetic_accuracy:.3f}")
    for tp in r.throughput:
        ctx = units.context(tp.context)
        t.add_row(f"prefill tokens/s @{ctx}", units.count(tp.prefill_tokens_per_s))
        t.add_row(f"decode tokens/s @{ctx}", units.count(tp.decode_tokens_per_s))
        t.add_row(f"KV+state bytes @{ctx}", units.nbytes(tp.kv_state_bytes))
    if r.peak_memory_bytes is not None:
        kind = "GPU allocated" if r.memory_kind == "cuda_allocated" else "process RSS"
        t.add_row(f"peak memory ({kind})", units.nbytes(r.peak_memory_bytes))
    t.add_row("wall time", f"{r.wall_seconds:.1f} s")
    console.print(t)
