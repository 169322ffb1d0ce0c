"""How much training does a recall task need before it separates the families? A sweep to calibrate a profile.

    python benchmarks/recall_calibration.py --profile gpu-small --task mqar \
        --settings seq_len=256,vocab_size=8192 --pairs 16,32,64 --tokens 4e6,16e6 --lrs 3e-4,1e-3,3e-3
    python benchmarks/recall_calibration.py --profile gpu-small --families mamba2 --d-state 16,64,256 ...
    python benchmarks/recall_calibration.py --profile cpu-tiny --task mqar --settings seq_len=64,vocab_size=128 \
        --pairs 4,8 --tokens 2e5,8e5 --lrs 1e-3,3e-3 --families attention,mamba2       # ~10 min on 2 CPU cores
    python benchmarks/recall_calibration.py --smoke                                      # seconds (CI)

`--families` takes any other layout as NAME=PATTERN, and options after it by ';':
`--families "1:7 no norm=M-M-M-M-*-M-M-M-;mamba2.norm=none"` trains the 1:7 hybrid with its Mamba-2 layers' gated
norm left out (docs/proxy-evidence.md), beside the families.

Any other synthetic task works the same way (`--task in_context_recall --settings seq_len=256`), without
`--pairs` where it has no key-value pairs: its columns are the budgets alone.

`--compile` trains each cell with its blocks compiled (`torch.compile`, as a profile's `compile: true`): the same
training, about twice the tokens a second on a GPU, which is what makes budgets of 100M tokens and more a cell
affordable there.

A profile's synthetic suite trains each task on a fresh model for `tokens_per_task` tokens at one learning
rate. Too few steps and every family sits at chance (MQAR at 16 pairs in `gpu-small`: 0.008-0.027), and a
task that separates nothing only adds noise to the score. This sweep trains each family of
`proxy_evidence.py` (at the profile's size, by the same scaling rule) on one task alone, for each number of
key-value pairs (`--pairs`; MQAR's `num_kv_pairs`), token budget and learning rate, exactly as a trial's
synthetic part (`workers.evaluate` with `parts=[task]`), and scores it on the profile's held-out examples.

The report gives, for each family, pairs and budget, the best accuracy over the learning rates and the rate
that reached it (as Zoology and MAD pick a learning rate per model), with the seconds a cell took; then, at
each pairs and budget, the share of the gap between pure Mamba-2 and attention that the 1:7 hybrid closes.
`--d-state` repeats the SSM families (Mamba-2's `d_state`) at other state sizes: a fixed-state mixer should
recall more pairs with a larger state.

Each cell is kept as it finishes (`--out`'s JSON; a cell already there, of the same task settings and seed,
is not trained again), so a run cut short by a device's time limit resumes where it stopped, smallest budget
first; `--report-only` writes the report from the cells kept so far. `--seed 0,1,2,3` trains every cell once per
seed: where a task is learnt in a sudden jump after a plateau (MQAR), how often a family gets there within a
budget is the number to know, and the report ends with each cell's accuracy per seed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

# the project's `kernels` package, not this folder's kernels.py (a script's folder comes first)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import command, machine, publish
from proxy_evidence import FAMILIES, arch, layout, order, spelled

from nas import units as fmt
from search_spaces import ArchConfig, ConfigError
from workers.data.synthetic import IGNORE_INDEX, TASKS, make_task
from workers.evaluate import evaluate
from workers.profile import ProxyProfile, load_profile

SSM_FAMILIES = ("mamba2", "hybrid 1:7")  # the ones `--d-state` varies (Mamba-2's d_state)
MIN_GAP = 0.05  # a gap between attention and Mamba-2 smaller than this is noise: no share of it is reported


def setting(text: str) -> int | float | list[int | float]:
    """A `--settings` value: a number (an integer where it is one), or numbers joined by '/' for a list."""
    if "/" in text:
        return [setting(t) for t in text.split("/")]  # type: ignore[misc]
    value = float(text)
    return int(value) if value.is_integer() and not any(c in text for c in ".eE") else value


def cell_key(family: str, d_state: int | None, pairs: int | None, tokens: int, lr: float) -> str:
    return f"{family}|{d_state or '-'}|{'-' if pairs is None else pairs}|{tokens}|{lr:g}"


def sized(settings: dict, pairs: int | None) -> dict:
    """The task's settings with `num_kv_pairs` = pairs, for a task that has it (None: a task without pairs)."""
    return settings if pairs is None else {**settings, "num_kv_pairs": pairs}


def at(pairs: int | None, tokens: int) -> str:
    """A column's name: '32 pairs, 96M tokens', or '96M tokens' for a task without pairs."""
    return ("" if pairs is None else f"{pairs} pairs, ") + f"{fmt.count(tokens)} tokens"


def same_run(cell: dict, settings: dict, seed: int, batch_size: int) -> bool:
    """Whether a kept cell was trained with these task settings, seed and batch size (the JSON may hold others; a
    cell that names no batch size was trained at the profile's, given here). Weight decays are told apart by the
    run itself, against the profile's decay (`decay_of` in `main`)."""
    return cell["settings"] == settings and cell["seed"] == seed and cell.get("batch_size", batch_size) == batch_size


def task_profile(profile: ProxyProfile, task: str, settings: dict, pairs: int | None, tokens: int,
                 lr: float, batch_size: int | None = None, compile: bool | None = None,
                 weight_decay: float | None = None) -> ProxyProfile:
    """`profile` with one synthetic task (`settings`, `num_kv_pairs` = pairs) at `tokens`, learning rate `lr` and
    (where given) `batch_size` sequences a step and AdamW's `weight_decay`, its blocks compiled where `compile`
    says so."""
    data = profile.model_dump()
    if compile is not None:
        data["compile"] = compile
    if batch_size is not None:
        data["synthetic"]["batch_size"] = batch_size
    data["synthetic"]["tasks"] = [{"name": task, "settings": sized(settings, pairs), "tokens": tokens}]
    data["synthetic"]["optim"]["lr"] = lr
    if weight_decay is not None:
        data["synthetic"]["optim"]["weight_decay"] = weight_decay
    return ProxyProfile(**data)


class Group(NamedTuple):
    """A table of the report: the cells of one task setting, batch size, seed and weight decay (None: the
    profile's)."""

    settings: dict
    batch_size: int
    seed: int
    cells: list[dict]
    weight_decay: float | None = None


def ident(cell: dict) -> tuple:
    """What makes a kept cell one of its own in the JSON: its key, seed, task settings, batch size and weight
    decay (the last two as the cell names them)."""
    return (cell["key"], cell["seed"], json.dumps(cell["settings"], sort_keys=True), cell.get("batch_size"),
            cell.get("weight_decay"))


def save_cells(path: Path, cells: list[dict]) -> None:
    """Writes the kept cells to `path` whole: through a neighbour file, so a run killed mid-write leaves the last
    whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.part")
    partial.write_text(json.dumps(cells, indent=1) + "\n")
    partial.replace(path)


def merge(kept: list[dict], folders: list[Path], name: str) -> list[dict]:
    """`kept` with the cells that other runs kept in their own --out folders (`name` in each) and `kept` lacks:
    runs of this script side by side on one device, each with its own folder, fold into one JSON."""
    have = {ident(c) for c in kept}
    out = list(kept)
    for folder in folders:
        path = folder / name
        if not path.is_file():
            raise SystemExit(f"--merge {folder}: there is no {name} there; give the --out folder of a run of this "
                             "task and profile")
        for cell in json.loads(path.read_text()):
            if ident(cell) not in have:
                have.add(ident(cell))
                out.append(cell)
    return out


def family_arch(family: str, params: float, d_state: int | None, vocab_size: int = 256,
                pattern: str | None = None, options: dict | None = None) -> ArchConfig:
    """The family's proxy (or `pattern`'s, under the family options of proxy-evidence and `options`:
    {'mamba2': {'norm': 'none'}}) at `params`, its vocabulary at least the task's (the rest of the budget in its
    blocks)."""
    if d_state is not None:
        options = {**(options or {}), "mamba2": {**(options or {}).get("mamba2", {}), "d_state": d_state}}
    return arch(pattern or FAMILIES[family], params, max(256, vocab_size), options=options)


def best_cells(cells: list[dict]) -> dict[tuple, dict]:
    """(family, d_state, pairs, tokens) -> the cell of the best accuracy over the learning rates."""
    best: dict[tuple, dict] = {}
    for c in cells:
        key = (c["family"], c["d_state"], c["pairs"], c["tokens"])
        if c["accuracy"] is not None and (key not in best or c["accuracy"] > best[key]["accuracy"]):
            best[key] = c
    return best


def gap_closed(best: dict[tuple, dict], pairs: int, tokens: int) -> float | None:
    """The share of the accuracy gap between pure Mamba-2 and attention that the 1:7 hybrid closes (None where
    attention does not lead by MIN_GAP)."""
    try:
        att, m2, hyb = (best[(f, None, pairs, tokens)]["accuracy"] for f in ("attention", "mamba2", "hybrid 1:7"))
    except KeyError:
        return None
    return None if att - m2 < MIN_GAP else (hyb - m2) / (att - m2)


def render(profile: ProxyProfile, task: str, groups: list[Group], params: float,
           device: str | None, command: str) -> list[str]:
    """The report: a table per task settings, batch size, weight decay and seed (the run's own `Group`s first, then
    those kept from earlier runs), then, where the run's cells have several seeds, each cell's accuracy per seed;
    `device` None for a report of kept cells only."""
    run = f"`{command}` on {device}." if device else f"`{command}`, from the cells kept by earlier runs."
    if len({run_of(g) for g in groups}) > 1:
        run += (" Cells of earlier runs with other task settings, batch sizes or weight decays (same seeds, same "
                "JSON) follow under their own heading.")
    lines = [
        f"# Recall calibration: `{task}` at `{profile.name}`'s size",
        "",
        run + " Each table names the machines its cells were measured on.",
        "",
        f"Each family at about {fmt.count(params)} parameters (its vocabulary at least the task's), a fresh model "
        f"per cell, scored on {profile.synthetic.eval_examples} held-out examples. Each cell: the best accuracy "
        "over the learning rates tried, the rate, and the cell's seconds.",
    ]
    for settings, batch_size, seed, cells, weight_decay in groups:
        measured = sorted({c.get("device") or "a machine this JSON does not name" for c in cells})
        steps = sorted({c["steps"] for c in cells if c.get("steps")})
        seeded = "" if seed == profile.seed else f", seed {seed}"
        decayed = "" if weight_decay is None else f", weight decay {weight_decay:g}"
        lines += ["", f"## Task settings {json.dumps(settings)}, batch {batch_size}{decayed}{seeded}", "",
                  f"Measured on {'; '.join(measured)}. Steps a cell: {', '.join(f'{s:,}' for s in steps)}.", "",
                  *render_cells(profile, task, cells)]
    first = [g for g in groups if run_of(g) == run_of(groups[0])]
    return lines + (seed_table(first) if len(first) > 1 else [])


def run_of(group: Group) -> tuple:
    """What the groups of one run's seeds share: task settings, batch size and weight decay."""
    return json.dumps(group.settings, sort_keys=True), group.batch_size, group.weight_decay


def seed_table(groups: list[Group]) -> list[str]:
    """Each family, pairs and budget that trained under several seeds (one task setting, batch size and weight
    decay): its best accuracy over the rates for each seed, and how many seeds left chance by far (MQAR's jump:
    ≥ 0.5)."""
    seeds = [g.seed for g in groups]
    best = {g.seed: best_cells(g.cells) for g in groups}
    units = sorted({k for b in best.values() for k in b}, key=lambda k: (order(k[0]), k[1] or 0, k[2], k[3]))
    units = [k for k in units if sum(k in best[s] for s in seeds) > 1]
    if not units:
        return []
    lines = ["", f"## Over seeds {', '.join(map(str, seeds))}: each cell's best accuracy", "",
             "| family | d_state | pairs | tokens | " + " | ".join(f"seed {s}" for s in seeds) + " | ≥ 0.5 |",
             "|---|---:|---:|---:|" + "---:|" * (len(seeds) + 1)]
    for k in units:
        accs = [best[s][k]["accuracy"] if k in best[s] else None for s in seeds]
        shown = [a for a in accs if a is not None]
        lines.append(f"| {k[0]} | {k[1] or 'default'} | {'–' if k[2] is None else k[2]} | {fmt.count(k[3])} | "
                     + " | ".join("–" if a is None else f"{a:.3f}" for a in accs)
                     + f" | {sum(a >= 0.5 for a in shown)} of {len(shown)} |")
    return lines


def render_cells(profile: ProxyProfile, task: str, cells: list[dict]) -> list[str]:
    best = best_cells(cells)
    pairs = sorted({c["pairs"] for c in cells}, key=lambda p: p or 0)
    budgets = sorted({c["tokens"] for c in cells})
    rows = sorted({(c["family"], c["d_state"]) for c in cells},
                  key=lambda r: (order(r[0]), r[1] or 0))
    lines = [
        "| family | d_state | " + " | ".join(at(p, t) for p in pairs for t in budgets)
        + " |",
        "|---|---:|" + "---:|" * (len(pairs) * len(budgets)),
    ]
    for family, d_state in rows:
        out = []
        for p in pairs:
            for t in budgets:
                c = best.get((family, d_state, p, t))
                out.append("–" if c is None else f"{c['accuracy']:.3f} (lr {c['lr']:g}, {seconds(c)})")
        first = next(c for c in cells if c["family"] == family)
        named = f"{family} `{first.get('pattern')}`{spelled(first.get('options', {}))}"
        label = family if family in FAMILIES else named
        lines.append(f"| {label} | {d_state or 'default'} | " + " | ".join(out) + " |")
    closed = [(p, t, gap_closed(best, p, t)) for p in pairs for t in budgets]
    closed = [(p, t, g) for p, t, g in closed if g is not None]
    if closed:
        lines += ["", f"The 1:7 hybrid's share of the gap between pure Mamba-2 and attention (goal ≥ 80%), where "
                  f"attention leads by {MIN_GAP} or more: "
                  + "; ".join(f"{at(p, t)}: {g:.0%}" for p, t, g in closed) + "."]
    failed = [c for c in cells if c["accuracy"] is None]
    if failed:
        lines += ["", "Failed cells: " + "; ".join(f"{c['family']} {at(c['pairs'], c['tokens'])} lr {c['lr']:g}: "
                                                  f"{c['failure']}" for c in failed) + "."]
    minutes = sum(c["seconds"] for c in cells) / 60
    lines += ["", f"{len(cells)} cells, {minutes:.1f} min of training and scoring in all. Every cell, each "
              f"learning rate: `{task}-{profile.name}.json` beside this page."]
    return lines


def seconds(cell: dict) -> str:
    """A cell's wall seconds, whether its blocks were compiled, and how many runs shared the device while it trained
    (their seconds are not solo)."""
    shared = cell.get("sharing", 1)
    return (f"{cell['seconds']:.0f} s" + (", compiled" if cell.get("compiled") else "")
            + (f", {shared} runs on the device" if shared > 1 else ""))


def train_cell(job: dict) -> dict:
    """Train and score one cell (`job`: the run's common settings and the cell's family, d_state, pairs, tokens,
    lr and key); the cell as the JSON keeps it. Top level, so that a spawned process can run it (`--jobs`)."""
    family, d_state, p, lr = job["family"], job["d_state"], job["pairs"], job["lr"]
    settings = job["settings"]
    cfg = family_arch(family, job["params"], d_state, settings.get("vocab_size", 0), job.get("pattern"),
                      job.get("options"))
    prof = task_profile(job["profile"], job["task"], settings, p, job["tokens"], lr, job["batch_size"],
                        job["compile"], job.get("weight_decay"))
    decayed = "" if job.get("weight_decay") is None else f" wd={job['weight_decay']:g}"
    curve: list[list[float]] = []  # (step, mean training loss since the last report): where it starts to learn

    def report(e) -> None:
        curve.append([e.step, round(e.loss, 4)])
        if job["progress"]:
            print(f"  {family}{'' if d_state is None else f' d_state={d_state}'} pairs={'-' if p is None else p} "
                  f"lr={lr:g} seed={job['seed']}{decayed} "
                  f"step {e.step}/{e.steps} loss {e.loss:.3f} "
                  f"{e.tokens_per_s / 1e3:.0f}K tok/s", flush=True)

    r = evaluate(cfg, prof, seed=job["seed"], parts=[job["task"]], progress=report)
    score = r.tasks.get(job["task"])
    return {
        "key": job["key"], "settings": settings, "seed": job["seed"], "batch_size": job["batch_size"],
        **({} if job.get("weight_decay") is None else {"weight_decay": job["weight_decay"]}),
        "family": family, "d_state": d_state, "pairs": p, "tokens": job["tokens"], "lr": lr,
        "pattern": cfg.pattern, **({"options": job["options"]} if job.get("options") else {}),
        "d_model": cfg.d_model, "params": r.params,
        "accuracy": score.accuracy if score else None, "val_loss": score.val_loss if score else None,
        "steps": score.steps if score else None, "seconds": score.seconds if score else r.wall_seconds,
        "failure": (r.failure.reason if r.failure else "no score") if score is None else None,
        "device": job["device"], "sharing": job["sharing"], "compiled": prof.compile, "curve": curve,
    }


PROGRESS = re.compile(r"^\s+(?P<family>\S.*?)(?: d_state=(?P<d_state>\d+))? pairs=(?P<pairs>\d+|-) "
                      r"lr=(?P<lr>\S+)(?: seed=(?P<seed>\d+))?(?: wd=(?P<wd>\S+))? "
                      r"step (?P<step>\d+)/(?P<steps>\d+) loss (?P<loss>[\d.]+)", re.M)


def log_curves(path: Path, batch_size: int, seq_len: int, seed: int = 0) -> list[dict]:
    """The training curves in a run's `--progress` lines (`path`), one per family, pairs, rate, seed and budget:
    all that is left of a cell its run was cut off before scoring. Each as a cell without an accuracy (`cut`: the
    step it reached); `seed` for lines that name none (a run of one seed before they did)."""
    runs: dict[tuple, list[list[float]]] = {}
    for m in PROGRESS.finditer(path.read_text()):
        pairs = None if m["pairs"] == "-" else int(m["pairs"])
        wd = None if m["wd"] is None else float(m["wd"])
        d_state = None if m["d_state"] is None else int(m["d_state"])
        key = (m["family"], d_state, pairs, float(m["lr"]), int(m["seed"] or seed), wd, int(m["steps"]))
        runs.setdefault(key, []).append([int(m["step"]), float(m["loss"])])
    return [{"family": f, "d_state": d, "pairs": p, "lr": lr, "seed": s, "tokens": steps * batch_size * seq_len,
             "accuracy": None, "curve": curve, "cut": curve[-1][0], "log": path.name,
             **({} if wd is None else {"weight_decay": wd})}
            for (f, d, p, lr, s, wd, steps), curve in runs.items() if curve[-1][0] < steps]


def cut_note(cell: dict, batch_size: int, seq_len: int) -> str:
    """A run cut off before scoring (`log_curves`), in words: which, where it stopped, its last training loss."""
    name = cell["family"] + ("" if cell.get("d_state") is None else f" d_state {cell['d_state']}")
    decayed = "" if cell.get("weight_decay") is None else f", weight decay {cell['weight_decay']:g}"
    steps = cell["tokens"] // (batch_size * seq_len)
    return (f"{name}, seed {cell['seed']}{decayed}, {at(cell['pairs'], cell['tokens'])}, lr {cell['lr']:g}: step "
            f"{cell['cut']:,} of {steps:,}, training loss {cell['curve'][-1][1]:.3f} ({cell['log']})")


def plot_curves(task: str, settings: dict, batch_size: int, cells: list[dict], path: Path) -> bool:
    """Training loss against tokens seen, a panel per number of pairs, a line per cell that kept its curve (and per
    cut-off run of `log_curves`, dotted): where each family starts to learn the task, if it does. False (nothing
    written) where no cell has a curve."""
    cells = [c for c in cells if c.get("curve")]
    if not cells:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    pairs = sorted({c["pairs"] for c in cells}, key=lambda p: p or 0)
    several_seeds = len({c.get("seed") for c in cells if not c.get("cut")}) > 1
    # a panel per number of pairs, one above the other: each keeps its legend beside it at a readable width
    fig, axes = plt.subplots(len(pairs), 1, figsize=(11, 4.6 * len(pairs)), squeeze=False, sharey=True)
    named = sorted({c["family"] for c in cells} - set(FAMILIES))
    colours = {f: f"C{i % 10}" for i, f in enumerate([*FAMILIES, *named])}
    styles = ["-", "--", ":", "-."]
    probe = make_task(task, **sized(settings, pairs[0]))
    seq = probe.seq_len
    for ax, p in zip(axes[:, 0], pairs, strict=True):
        here = sorted((c for c in cells if c["pairs"] == p), key=lambda c: (order(c["family"]),
                                                                           c["lr"], c["tokens"]))
        lrs = sorted({c["lr"] for c in here})
        for c in here:
            steps, loss = zip(*c["curve"], strict=True)
            cut = c.get("cut")
            score = (f"{c['accuracy']:.2f}" if not cut else
                     f"cut at {fmt.count(cut * batch_size * seq)} tokens, not scored ({c['log']})")
            seeded = ("" if c.get("d_state") is None else f" d_state {c['d_state']}") + (
                f" seed {c['seed']}" if several_seeds else "") + (
                f" wd {c['weight_decay']:g}" if c.get("weight_decay") is not None else "")
            ax.plot([s * batch_size * seq / 1e6 for s in steps], loss, color=colours[c["family"]],
                    linestyle=":" if cut else styles[lrs.index(c["lr"]) % len(styles)], linewidth=1.2,
                    label=f"{c['family']}{seeded} lr {c['lr']:g}, {fmt.count(c['tokens'])}: {score}")
        ax.set_title(task if p is None else f"{p} pairs")
        ax.set_xlabel("training tokens (M)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="family, rate, budget: accuracy", title_fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))  # beside the panel: the curves it would hide start at the top
    _, y = probe.batch(1, torch.Generator(), train=True)
    every = (y != IGNORE_INDEX).all().item()  # MAD's in-context recall tasks train on every next token
    for ax in axes[:, 0]:
        ax.set_ylabel("training loss, every next token" if every else "training loss on the answers")
    fig.suptitle(f"{task} {json.dumps(settings)}, batch {batch_size}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legends beside the panels kept whole
    plt.close(fig)
    return True


def numbers(text: str, kind=float) -> list:
    return [kind(float(x)) for x in text.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu-tiny")
    ap.add_argument("--task", default="mqar", help="a synthetic task (workers.data.synthetic: mqar, "
                    "in_context_recall, ...); its size is --settings, and --pairs where it has key-value pairs")
    ap.add_argument("--settings", default="", help="the task's other settings, key=value,... (seq_len=256,...; "
                    "a list '/'-joined: train_pairs=4/8/16)")
    ap.add_argument("--pairs", default=None, help="comma-separated numbers of key-value pairs (MQAR's "
                    "num_kv_pairs; default 4,8), for a task that has them")
    ap.add_argument("--tokens", default="2e5", help="comma-separated training budgets in tokens (4e6,16e6)")
    ap.add_argument("--lrs", default="1e-3,3e-3", help="comma-separated learning rates")
    ap.add_argument("--families", default="attention,mamba2,hybrid 1:7",
                    help=f"of: {', '.join(FAMILIES)}; or NAME=PATTERN for any other layout (1:1=M-*-M-*-M-*-M-*-), "
                         "options after it by ';' (1:7 no norm=M-M-M-M-*-M-M-M-;mamba2.norm=none)")
    ap.add_argument("--d-state", default="", help=f"also these Mamba-2 state sizes for {', '.join(SSM_FAMILIES)}")
    ap.add_argument("--seed", default=None, help="comma-separated seeds, each cell trained once per seed "
                    "(0,1,2,3: how often a family leaves chance); default: the profile's")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="sequences a step; default: the profile's synthetic batch size")
    ap.add_argument("--weight-decay", type=float, default=None,
                    help="AdamW's weight decay for every cell (default: the profile's synthetic optimiser's, 0 at "
                         "gpu-small; Zoology trains MQAR at 0.1); cells at another than the profile's are kept and "
                         "reported under their own heading")
    ap.add_argument("--out", type=Path, default=Path("docs/proxy-fidelity"))
    ap.add_argument("--merge", type=Path, action="append", default=[], metavar="DIR",
                    help="first fold in the cells kept in DIR (another run's --out: runs side by side on one "
                         "device, each with its own folder) that --out's JSON lacks; repeat it for several")
    ap.add_argument("--report-only", action="store_true",
                    help="write the report from the cells kept in --out's JSON, training none")
    ap.add_argument("--progress", action="store_true", help="print each cell's training loss as it goes")
    ap.add_argument("--jobs", type=int, default=1,
                    help="cells trained at once on the one device, each in its own process (4 packs an H200)")
    ap.add_argument("--sharing", type=int, default=None,
                    help="how many runs share the device, where several runs of this script do (default: --jobs); "
                         "kept with each cell, whose seconds are then not solo")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="train with each block compiled (the profile's `compile`; default: as the profile says); "
                         "the same training, about twice as fast on a GPU (docs/benchmarks/compile_cost.md)")
    ap.add_argument("--log-curves", type=Path, action="append", default=[],
                    help="also plot the training curves of runs cut off before scoring, from the --progress lines "
                         "of their log (repeat it); their cells stay untrained in the JSON")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and budgets; writes nothing")
    args = ap.parse_args()

    profile = load_profile(args.profile)
    families = args.families.split(",")
    layouts = dict(f.split("=", 1) for f in families if "=" in f)  # named layouts beside the families
    families = [f.split("=", 1)[0] for f in families]
    unknown = [f for f in families if f not in FAMILIES and f not in layouts]
    if unknown:
        raise SystemExit(f"unknown family {unknown[0]!r}; choose from {', '.join(FAMILIES)}, or give NAME=PATTERN")
    patterns, options = {}, {}
    for name, text in layouts.items():
        try:
            patterns[name], options[name] = layout(text)
            family_arch(name, profile.params, None, pattern=patterns[name], options=options[name])
        except (ConfigError, ValueError) as e:
            raise SystemExit(f"--families {name}={text}: {e}") from None
    try:
        settings = {k: setting(v) for k, v in (kv.split("=") for kv in args.settings.split(",") if kv)}
        has_pairs = "num_kv_pairs" in getattr(TASKS.get(args.task), "model_fields", {"num_kv_pairs": 0})
        pairs = numbers(args.pairs or "4,8", int) if has_pairs else [None]
        budgets, lrs = numbers(args.tokens, int), numbers(args.lrs)
        d_states = [None, *numbers(args.d_state, int)]
        seeds = numbers(args.seed, int) if args.seed else [profile.seed]
    except ValueError:
        raise SystemExit("--settings is key=number pairs, a list's numbers joined by / (seq_len=256,vocab_size=512,"
                         "train_pairs=4/8/16/32/64,train_weights=5/1/1/1/1); --pairs, --tokens, "
                         "--lrs, --d-state and --seed are comma-separated numbers") from None
    params = profile.params
    if args.smoke:
        budgets, lrs, params = [4096], [3e-3], 5e4
        if has_pairs:  # MQAR at its smallest; any other task at its published size
            settings, pairs = {"seq_len": 16, "vocab_size": 32}, [2]
        d_states = [None]
    if args.pairs and not has_pairs:
        raise SystemExit(f"--pairs: the task {args.task} has no key-value pairs; set its size with --settings "
                         "(seq_len=...)")
    try:  # every task of the plan, before any training
        for p in pairs:
            make_task(args.task, **sized(settings, p))
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    batch = args.batch_size or profile.synthetic.batch_size
    default_wd = profile.synthetic.optim.weight_decay
    wd = None if args.weight_decay in (None, default_wd) else args.weight_decay  # None: the profile's
    json_path = args.out / f"{args.task}-{profile.name}.json"
    kept = json.loads(json_path.read_text()) if json_path.exists() and not args.smoke else []
    if args.merge and not args.smoke:
        kept = merge(kept, args.merge, json_path.name)
        save_cells(json_path, kept)

    def decay_of(c: dict) -> float | None:  # a kept cell's weight decay, None for the profile's
        return None if c.get("weight_decay", default_wd) == default_wd else c["weight_decay"]

    def mine(c: dict) -> bool:  # a kept cell of this run's task settings, batch size, weight decay and seeds
        return c["seed"] in seeds and same_run(c, settings, c["seed"], batch) and decay_of(c) == wd

    cells = [c for c in kept if mine(c)]
    done = {(c["key"], c["seed"]) for c in cells}
    # smallest budget first, every family and seed at each: a run cut short by a time limit still compares them
    plan = [(f, d, p, t, lr, s) for t in budgets for s in seeds for p in pairs for d in d_states for f in families
            if d is None or f in SSM_FAMILIES for lr in lrs]
    device = machine(gpu=True)
    todo = [] if args.report_only else [
        {"family": f, "pattern": patterns.get(f), "options": options.get(f), "d_state": d, "pairs": p, "tokens": t,
         "lr": lr, "seed": s, "key": cell_key(f, d, p, t, lr)}
        for f, d, p, t, lr, s in plan if (cell_key(f, d, p, t, lr), s) not in done]
    common = {"profile": profile, "task": args.task, "settings": settings, "params": params, "weight_decay": wd,
              "batch_size": batch, "progress": args.progress, "device": device, "compile": args.compile,
              "sharing": args.sharing or max(1, min(args.jobs, len(todo)))}
    t0 = time.perf_counter()

    def keep(cell: dict) -> None:
        cells.append(cell)
        acc = f"{cell['accuracy']:.3f}" if cell["accuracy"] is not None else f"failed: {cell['failure']}"
        seeded = f" seed={cell['seed']}" if len(seeds) > 1 else ""
        print(f"[{len(cells) - len(done)}/{len(todo)} {time.perf_counter() - t0:.0f}s] {cell['family']} "
              f"d_state={cell['d_state'] or '-'} pairs={cell['pairs'] or '-'} tokens={cell['tokens']:,} "
              f"lr={cell['lr']:g}{seeded}: {acc} ({cell['seconds']:.0f} s)", flush=True)
        if not args.smoke:  # each cell kept as it finishes, beside those of other settings or seeds
            save_cells(json_path, [c for c in kept if not mine(c)] + cells)

    if args.jobs > 1 and len(todo) > 1:  # several cells at once on the one device, each in its own process
        ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            for future in as_completed([pool.submit(train_cell, {**common, **job}) for job in todo]):
                keep(future.result())
    else:
        for job in todo:
            keep(train_cell({**common, **job}))
    if not cells:
        raise SystemExit(f"no cells of these task settings and seeds in {json_path}; run without --report-only")
    default_batch = profile.synthetic.batch_size
    ours = json.dumps(settings, sort_keys=True)
    groups = {(ours, batch, wd, s): Group(settings, batch, s, [c for c in cells if c["seed"] == s], wd)
              for s in seeds}
    groups = {k: g for k, g in groups.items() if g.cells}
    for c in kept:  # earlier runs' other settings, batch sizes or weight decays, of these seeds, each under its own
        if c["seed"] in seeds and not mine(c):  # heading
            b = c.get("batch_size", default_batch)
            key = (json.dumps(c["settings"], sort_keys=True), b, decay_of(c), c["seed"])
            groups.setdefault(key, Group(c["settings"], b, c["seed"], [], decay_of(c))).cells.append(c)
    lines = render(profile, args.task, list(groups.values()), params, None if args.report_only else device,
                   command())
    png = args.out / f"{args.task}-{profile.name}-curves.png"
    seq_len = make_task(args.task, **sized(settings, pairs[0])).seq_len
    cut = [c for log in args.log_curves for c in log_curves(log, batch, seq_len, seeds[0])]
    # every weight decay's curves in one plot (each labelled with its own where it is not the profile's)
    curves = cells + [c for c in kept if c["seed"] in seeds and same_run(c, settings, c["seed"], batch) and not mine(c)]
    if not args.smoke and plot_curves(args.task, settings, batch, curves + cut, png):
        lines += ["", f"Training curves of the cells with task settings {json.dumps(settings)}: "
                  f"![training loss against tokens]({png.name})"]
    if cut:
        lines += ["", "Dotted in the plot, runs cut off before they were scored, from their logs: "
                  + "; ".join(cut_note(c, batch, seq_len) for c in cut) + "."]
    publish(args.out / f"{args.task}-{profile.name}.md", lines, args.smoke)


if __name__ == "__main__":
    main()
