"""What a person sees in a terminal: a study's progress while it runs, and one evaluation's bars and scorecard.

    display = StudyDisplay(console, spec, budget=16)   # the runner drives it
    result = run_eval(cfg, profile, console=console)   # `nas eval`: bars per task, then
    print_scorecard(result, console)                   # quality, throughput and memory in one table

In a terminal they draw rich bars; when the output is a pipe or a log file (`nas eval ... | tee`, a
scheduler's log) they print plain lines as they go: one every PLAIN_EVERY seconds with the step, loss,
tokens/s and ETA, and one when a trial or task starts, waits or ends.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nas import record, units
from search_spaces import ArchConfig, abbreviate

__all__ = ["PLAIN_EVERY", "StudyDisplay", "hms", "print_scorecard", "run_eval"]


PLAIN_EVERY = 5.0  # seconds between progress lines when the output is not a terminal (a pipe, a log file)


def _plain(console) -> bool:
    """Bars redraw in place, which only a terminal shows as it goes: a pipe or a log gets lines instead."""
    return console is None or not console.is_terminal


class StudyDisplay:
    """A study's progress: trials done / running / failed, best so far, ETA, and each job in flight.

    In a terminal: rich bars, one per job in flight. Anywhere else (`| tee`, a scheduler's log): a line when
    a trial starts, waits or ends, and every PLAIN_EVERY seconds a line with the counts, the best values,
    the ETA and each job's task, step, loss and tokens/s.
    """

    def __init__(self, console, spec, budget: int | None):
        self.spec = spec
        self.budget = budget
        self.console = console if console is not None else Console(stderr=True)
        self.plain = _plain(console)
        self.jobs: dict[int, dict] = {}  # trial -> its latest report (plain mode)
        self.labels: dict[int, str] = {}
        self.last_line = 0.0
        if self.plain:
            return
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

    def _say(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def started(self, number: int, pattern: str, rung: int, rungs: int) -> None:
        label = f"  trial {number:<3d} {abbreviate(pattern, 24):24s}" + (f" r{rung + 1}/{rungs}" if rungs > 1 else "")
        if self.plain:
            self.labels[number] = f"trial {number} {abbreviate(pattern, 24)}" + (
                f" r{rung + 1}/{rungs}" if rungs > 1 else "")
            self.jobs[number] = {}
            self._say(f"{self.labels[number]}: started")
            return
        if number in self.rows:
            self.progress.remove_task(self.rows.pop(number))
        self.rows[number] = self.progress.add_task(label, total=None, info="starting")

    def waiting(self, number: int, why: str) -> None:
        """The job of trial `number` has not started: `why` ("waiting for 0.25 GPU; the cluster has none")."""
        if self.plain:
            self._say(f"{self.labels.get(number, f'trial {number}')}: {why}")
        elif number in self.rows:
            self.progress.update(self.rows[number], info=why)

    def update(self, number: int, r: dict) -> None:
        if self.plain:
            if number in self.jobs:
                self.jobs[number] = r
            return
        if number in self.rows:
            self.progress.update(
                self.rows[number], total=r["steps"], completed=r["step"], info=f"{r['task']} loss {r['loss']:.3f}"
            )

    def finished(self, number: int, what: str, values=None) -> None:
        shown = ""
        if values is not None:
            shown = "  " + "  ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.metrics, values))
        if self.plain:
            self.jobs.pop(number, None)
            self._say(f"trial {number}: {what}{shown}")
            return
        if number in self.rows:
            self.progress.remove_task(self.rows.pop(number))
        self.progress.console.print(f"trial {number}: {what}{shown}")

    def note(self, text: str) -> None:
        self.console.print(text, style="dim", markup=False, highlight=False, soft_wrap=True)

    def tick(self, counts: dict[str, int], elapsed: float, best: dict[str, float]) -> None:
        done = record.finished(counts) + counts["paused"]
        rate = elapsed / done if done else None
        eta = ""
        if rate and self.budget:
            eta = f"  ETA {hms(rate * max(0, self.budget - done) / max(1, self.spec.concurrency))}"
        info = (
            f"done {counts['complete']}  running {counts['running']}  failed {counts['failed']}"
            f"  infeasible {counts['infeasible']}"
            + (f"  pruned {counts['pruned']}" if counts["pruned"] else "")
            + "".join(f"  best {m} {v:.4g}" for m, v in best.items())
            + eta
        )
        if not self.plain:
            self.progress.update(self.overall, completed=done, info=info)
            return
        now = time.monotonic()
        if now - self.last_line < PLAIN_EVERY:
            return
        self.last_line = now
        of = f"/{self.budget}" if self.budget else ""
        jobs = [f"{self.labels.get(n, f'trial {n}')} {_report(r)}" for n, r in sorted(self.jobs.items()) if r]
        self._say(f"[{hms(elapsed)}] {self.spec.name} {done}{of}: {info.strip()}"
                  + "".join(f"\n  {j}" for j in jobs))

    def close(self) -> None:
        if not self.plain:
            self.progress.stop()


def _report(r: dict) -> str:
    """One job's latest training report: task step/steps, loss, tokens/s."""
    return f"{r['task']} {r['step']}/{r['steps']} loss {r['loss']:.3f} {units.count(r['tokens_per_s'])} tok/s"


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class _PlainEval:
    """`nas eval` without a terminal: a line per task every PLAIN_EVERY seconds and when it ends, with its
    step, loss, tokens/s and the task's ETA."""

    def __init__(self, console: Console):
        self.console = console
        self.began: dict[str, float] = {}
        self.last = 0.0

    def __call__(self, p) -> None:
        now = time.monotonic()
        first = p.task not in self.began
        self.began.setdefault(p.task, now)
        last_step = p.step >= p.steps
        if not (first or last_step or now - self.last >= PLAIN_EVERY):
            return
        self.last = now
        spent = now - self.began[p.task]
        eta = f"  ETA {hms(spent / p.step * (p.steps - p.step))}" if p.step and not last_step else ""
        self.console.print(
            f"{p.task} {p.step}/{p.steps}  loss {p.loss:.3f}  {units.count(p.tokens_per_s)} tok/s"
            + (f"  done in {hms(spent)}" if last_step else eta),
            markup=False, highlight=False, soft_wrap=True,
        )


def run_eval(cfg: ArchConfig, profile, *, seed: int | None = None, device: str | None = None,
             console: Console | None = None):
    from workers.evaluate import evaluate  # torch: loaded when an evaluation runs

    if _plain(console):
        report = _PlainEval(console if console is not None else Console(stderr=True))
        return evaluate(cfg, profile, seed=seed, device=device, progress=report)
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
