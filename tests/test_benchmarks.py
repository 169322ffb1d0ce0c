"""Every script in benchmarks/ runs with --smoke (tiny sizes, CPU) and exits 0."""

import concurrent.futures
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_benchmark_smoke(script, tmp_path):
    r = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])


@pytest.mark.slow
def test_recall_calibration_trains_cells_in_parallel_processes(tmp_path):
    """`--jobs 2`: the cells train in two spawned processes and come back the same as trained one by one."""
    script = SCRIPTS[0].parent / "recall_calibration.py"

    def table(*extra):
        r = subprocess.run([sys.executable, str(script), "--smoke", "--families", "attention,mamba2", *extra],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
        return {line.split("|")[1].strip(): line.split("|")[3].split("(")[0].strip()
                for line in r.stdout.splitlines() if line.startswith("| attention") or line.startswith("| mamba2")}

    one, two = table(), table("--jobs", "2")
    assert set(one) == {"attention", "mamba2"} and one == two


def test_proxy_evidence_spread_over_seeds():
    """The seeds section: mean ± standard deviation per family, and Kendall τ of the families' order."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import proxy_evidence as pe

    assert pe.kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0 and pe.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0

    def row(family, seed, loss, acc):
        return {"family": family, "status": "ok", "seeds": {"model": seed}, "lm": {"val_loss": loss},
                "synthetic_accuracy": acc, "tasks": {"mqar": {"accuracy": acc}}}

    rows = [row("a", 0, 1.0, 0.5), row("a", 1, 3.0, 0.7), row("b", 0, 2.0, 0.1), row("b", 1, 4.0, 0.2),
            row("c", 0, 5.0, 0.3), row("c", 1, 6.0, 0.1)]
    text = "\n".join(pe.spread_section(rows, ["mqar"]))
    assert "| a | 0,1 | 2.000 ± 1.414 | 0.600 ± 0.141 |" in text
    assert "LM loss: τ 1.00 over 1 pair(s)" in text and "mean acc: τ 0.33" in text
    assert pe.spread_section(rows[:1], ["mqar"]) == []  # one seed: no section


def test_recall_calibration_picks_each_cells_best_rate_and_the_hybrids_share_of_the_gap():
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import recall_calibration as rc

    from workers.profile import load_profile

    def cell(family, lr, acc, pairs=32, d_state=None):
        return {"key": rc.cell_key(family, d_state, pairs, 10**6, lr), "family": family, "d_state": d_state,
                "pairs": pairs, "tokens": 10**6, "lr": lr, "accuracy": acc, "seconds": 12.0, "failure": None}

    cells = [cell("attention", 1e-3, 0.9), cell("attention", 3e-3, 0.5), cell("mamba2", 1e-3, 0.3),
             cell("hybrid 1:7", 3e-3, 0.78), cell("mamba2", 1e-3, 0.6, d_state=256),
             {**cell("mamba2", 3e-3, None), "failure": "diverged"}]
    best = rc.best_cells(cells)
    assert best[("attention", None, 32, 10**6)]["lr"] == 1e-3
    assert abs(rc.gap_closed(best, 32, 10**6) - 0.8) < 1e-9 and rc.gap_closed(best, 16, 10**6) is None
    near = rc.best_cells([cell("attention", 1e-3, 0.34), cell("mamba2", 1e-3, 0.3), cell("hybrid 1:7", 1e-3, 0.5)])
    assert rc.gap_closed(near, 32, 10**6) is None  # attention 0.04 ahead: no gap to share
    other = [{**cell("attention", 1e-3, 0.25), "settings": {"seq_len": 128}}]
    text = "\n".join(rc.render(load_profile("cpu-tiny"), "mqar",
                               [rc.Group({"seq_len": 256}, 64, 0, cells), rc.Group({"seq_len": 128}, 16, 0, other)],
                               2e5, "cpu", "cmd"))
    first, second = '## Task settings {"seq_len": 256}, batch 64', '## Task settings {"seq_len": 128}, batch 16'
    assert text.index(first) < text.index(second)
    assert "| attention | default | 0.250 (lr 0.001, 12 s) |" in text and "1 cells, 0.2 min" in text
    assert "| attention | default | 0.900 (lr 0.001, 12 s) |" in text
    assert "| mamba2 | 256 | 0.600 (lr 0.001, 12 s) |" in text
    assert "32 pairs, 1M tokens: 80%" in text and "mamba2 32 pairs, 1M tokens lr 0.003: diverged" in text
    assert "6 cells, 1.2 min of training and scoring" in text
    assert "Over seeds" not in text  # one seed: no table across seeds

    # several seeds: a table each, then each cell's best accuracy per seed and how many seeds jumped
    again = [{**cell("attention", 1e-3, 0.97), "seed": 1}, {**cell("hybrid 1:7", 3e-3, 0.02), "seed": 1}]
    groups = [rc.Group({"seq_len": 256}, 64, 0, cells), rc.Group({"seq_len": 256}, 64, 1, again)]
    text = "\n".join(rc.render(load_profile("cpu-tiny"), "mqar", groups, 2e5, "cpu", "cmd"))
    assert '## Task settings {"seq_len": 256}, batch 64\n' in text and '{"seq_len": 256}, batch 64, seed 1' in text
    assert "## Over seeds 0, 1: each cell's best accuracy" in text
    assert "| attention | default | 32 | 1M | 0.900 | 0.970 | 2 of 2 |" in text
    assert "| hybrid 1:7 | default | 32 | 1M | 0.780 | 0.020 | 1 of 2 |" in text
    assert "| mamba2 | default | 32 |" not in text  # trained under one seed only
    kept = {"settings": {"seq_len": 256}, "seed": 0}  # a re-run reuses only cells of its own settings, seed, batch
    assert rc.same_run(kept, {"seq_len": 256}, 0, 64) and not rc.same_run(kept, {"seq_len": 128}, 0, 64)
    assert not rc.same_run(kept, {"seq_len": 256}, 1, 64)
    assert not rc.same_run({**kept, "batch_size": 16}, {"seq_len": 256}, 0, 64)


def test_recall_calibration_takes_a_task_without_pairs(tmp_path):
    """In-context recall has no `num_kv_pairs`: its cells have none, its columns name only the budget, and
    --pairs for it is refused with what to set instead."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import recall_calibration as rc

    assert rc.sized({"seq_len": 64}, None) == {"seq_len": 64} and rc.sized({}, 8) == {"num_kv_pairs": 8}
    assert rc.at(None, 10**6) == "1M tokens" and rc.at(32, 10**6) == "32 pairs, 1M tokens"
    assert rc.cell_key("attention", None, None, 10**6, 1e-3) == "attention|-|-|1000000|0.001"
    cells = [{"key": rc.cell_key(f, None, None, 10**6, 1e-3), "family": f, "d_state": None, "pairs": None,
              "tokens": 10**6, "lr": 1e-3, "accuracy": a, "seconds": 6.0, "failure": None}
             for f, a in (("attention", 0.9), ("mamba2", 0.1), ("hybrid 1:7", 0.5))]
    from workers.profile import load_profile

    text = "\n".join(rc.render_cells(load_profile("cpu-tiny"), "in_context_recall", cells))
    assert "| family | d_state | 1M tokens |" in text and "1M tokens: 50%" in text
    log = tmp_path / "call.log"
    log.write_text("  attention pairs=- lr=0.001 seed=0 step 5/10 loss 1.000 9K tok/s\n")
    assert rc.log_curves(log, 64, 127)[0]["pairs"] is None
    script = SCRIPTS[0].parent / "recall_calibration.py"
    r = subprocess.run([sys.executable, str(script), "--smoke", "--task", "in_context_recall", "--pairs", "4"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0 and "--pairs: the task in_context_recall has no key-value pairs" in r.stderr


def test_recall_calibration_settings_take_numbers_and_lists(tmp_path):
    """--settings values: integers stay integers (the JSON's kept cells compare equal), rates stay floats, and a
    '/'-joined list is MQAR's training mixture; a mixture MQAR cannot draw ends the run before any training."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import recall_calibration as rc

    assert rc.setting("256") == 256 and isinstance(rc.setting("256"), int)
    assert rc.setting("0.5") == 0.5 and rc.setting("1e-3") == 1e-3 and isinstance(rc.setting("1e3"), float)
    assert rc.setting("4/8/16") == [4, 8, 16] and rc.setting("5/1/0.5") == [5, 1, 0.5]
    with pytest.raises(ValueError):
        rc.setting("4/x")
    script = SCRIPTS[0].parent / "recall_calibration.py"
    r = subprocess.run([sys.executable, str(script), "--task", "mqar", "--profile", "cpu-tiny", "--pairs", "8",
                        "--settings", "seq_len=64,vocab_size=256,train_pairs=4/32", "--tokens", "4096",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0 and "train_pairs [32] do not fit seq_len=64; each must lie in 1..16" in r.stderr
    assert not list(tmp_path.glob("*.json"))
    r = subprocess.run([sys.executable, str(script), "--settings", "seq_len=six"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0 and "--settings is key=number pairs" in r.stderr


def test_recall_calibration_takes_named_patterns_beside_the_families(tmp_path):
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import recall_calibration as rc

    assert rc.family_arch("1:1", 2e5, None, 256, "M-*-M-*-").pattern == "M-*-M-*-"
    assert rc.order("attention") < rc.order("hybrid 1:7") < rc.order("1:1") < rc.order("2:1")
    script = SCRIPTS[0].parent / "recall_calibration.py"
    r = subprocess.run([sys.executable, str(script), "--smoke", "--families", "attention,odd=M-Q-"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0 and "--families odd=M-Q-: unknown layer symbol 'Q'" in r.stderr


def test_named_layouts_take_family_options(tmp_path):
    """`NAME=PATTERN;family.option=value`: the option reaches the built model, a cell keeps it and the report names
    it; an option for a family the layout lacks, or a malformed one, is refused before any training."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import proxy_evidence as pe
    import recall_calibration as rc

    assert pe.layout("M-*-;mamba2.norm=none; mamba2.d_state=16") == (
        "M-*-", {"mamba2": {"norm": "none", "d_state": "16"}})
    cfg = rc.family_arch("n", 2e5, 32, 256, "M-*-", {"mamba2": {"norm": "head"}})
    assert (cfg.mamba2.norm, cfg.mamba2.d_state) == ("head", 32)  # --d-state and the layout's options together
    assert pe.arch("M-*-", 2e5).mamba2.norm == "group"
    script = SCRIPTS[0].parent / "recall_calibration.py"
    r = subprocess.run([sys.executable, str(script), "--smoke", "--families", "attention,nn=M-*-;mamba2.norm=none"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| nn `M-*-` mamba2.norm=none |" in r.stdout
    for bad, words in [("x=*-;mamba2.norm=none", "the layout *- has no mamba2 layer"),
                       ("x=M-;mamba2norm=none", "'mamba2norm=none' is not family.option=value"),
                       ("x=M-;mamba2.norm=per", "input should be 'group', 'head' or 'none'")]:
        for name in ("recall_calibration.py", "proxy_evidence.py"):
            r = subprocess.run([sys.executable, str(script.parent / name), "--smoke", "--families", bad],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
            assert r.returncode != 0 and f"--families {bad}: " in r.stderr and words in r.stderr, (name, r.stderr)


def test_recall_calibration_plots_the_kept_training_curves(tmp_path):
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import recall_calibration as rc

    def cell(family, lr, curve):
        return {"family": family, "pairs": 8, "tokens": 10**6, "lr": lr, "accuracy": 0.5, "curve": curve}

    png = tmp_path / "curves.png"
    settings = {"seq_len": 64, "vocab_size": 256}
    assert not rc.plot_curves("mqar", settings, 64, [cell("attention", 1e-3, [])], png) and not png.exists()
    cells = [cell("attention", 1e-3, [[10, 5.5], [20, 2.0]]), cell("mamba2", 3e-3, [[10, 5.5], [20, 5.4]])]
    assert rc.plot_curves("mqar", settings, 64, cells, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # a run cut off before scoring leaves only its --progress lines: their curve, as a cell without an accuracy
    log = tmp_path / "call.log"
    log.write_text("  hybrid 1:7 pairs=8 lr=0.0006 step 25/100 loss 5.500 250K tok/s\n"
                   "  1:1 pairs=8 lr=0.003 step 100/100 loss 0.100 250K tok/s\n"  # finished: a cell of its own
                   "[1/2 40s] 1:1 d_state=- pairs=8 tokens=409,600 lr=0.003: 0.950 (40 s)\n"
                   "  hybrid 1:7 pairs=8 lr=0.0006 step 50/100 loss 0.010 251K tok/s\n"
                   "  hybrid 1:7 pairs=8 lr=0.0006 seed=3 step 25/100 loss 5.600 250K tok/s\n")  # another seed
    cut = rc.log_curves(log, 64, 64)
    assert cut == [{"family": "hybrid 1:7", "d_state": None, "pairs": 8, "lr": 6e-4, "seed": 0, "tokens": 100 * 64 * 64,
                    "accuracy": None, "curve": [[25, 5.5], [50, 0.01]], "cut": 50, "log": "call.log"},
                   {"family": "hybrid 1:7", "d_state": None, "pairs": 8, "lr": 6e-4, "seed": 3, "tokens": 100 * 64 * 64,
                    "accuracy": None, "curve": [[25, 5.6]], "cut": 25, "log": "call.log"}]
    png.unlink()
    assert rc.plot_curves("mqar", settings, 64, cells + cut, png) and png.stat().st_size > 10_000


def test_recall_calibration_weight_decay_and_merged_runs(tmp_path):
    """--weight-decay: its cells are a run of their own (kept apart from the profile's, reported under their own
    heading, their progress lines read back apart); --merge folds in the cells another run's folder kept."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import recall_calibration as rc

    from workers.profile import load_profile

    def cell(family, acc, seed=0, **extra):
        return {"key": rc.cell_key(family, None, 8, 10**6, 1e-3), "family": family, "d_state": None, "pairs": 8,
                "tokens": 10**6, "lr": 1e-3, "accuracy": acc, "seconds": 6.0, "failure": None, "seed": seed,
                "settings": {"seq_len": 64}, "batch_size": 64, **extra}

    plain, decayed = cell("attention", 0.9), cell("attention", 0.4, weight_decay=0.1)
    assert rc.same_run(decayed, {"seq_len": 64}, 0, 64) and rc.same_run(plain, {"seq_len": 64}, 0, 64)
    groups = [rc.Group({"seq_len": 64}, 64, 0, [plain]), rc.Group({"seq_len": 64}, 64, 0, [decayed], 0.1)]
    text = "\n".join(rc.render(load_profile("cpu-tiny"), "mqar", groups, 2e5, "cpu", "cmd"))
    assert '{"seq_len": 64}, batch 64\n' in text and '{"seq_len": 64}, batch 64, weight decay 0.1\n' in text
    assert "| attention | default | 0.900" in text and "| attention | default | 0.400" in text
    assert "Over seeds" not in text  # two runs, not two seeds of one

    log = tmp_path / "call.log"
    log.write_text("  hybrid 1:7 pairs=8 lr=0.0006 seed=0 step 25/100 loss 5.500 250K tok/s\n"
                   "  hybrid 1:7 pairs=8 lr=0.0006 seed=0 wd=0.1 step 25/100 loss 4.000 250K tok/s\n"
                   "  mamba2 d_state=16 pairs=8 lr=0.0006 seed=0 step 25/100 loss 5.000 250K tok/s\n")
    cut = rc.log_curves(log, 64, 64)
    assert [c.get("weight_decay") for c in cut] == [None, 0.1, None] and [c["d_state"] for c in cut] == [None, None, 16]
    assert [c["curve"] for c in cut] == [[[25, 5.5]], [[25, 4.0]], [[25, 5.0]]]

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder, cells in ((ours, [plain]), (theirs, [plain, decayed, cell("mamba2", 0.01, seed=1)])):
        folder.mkdir()
        (folder / "mqar-cpu-tiny.json").write_text(json.dumps(cells))
    merged = rc.merge([plain], [theirs], "mqar-cpu-tiny.json")
    assert merged == [plain, decayed, cell("mamba2", 0.01, seed=1)]  # the shared cell once
    with pytest.raises(SystemExit, match=r"--merge .*nothing: there is no mqar-cpu-tiny\.json there"):
        rc.merge([], [tmp_path / "nothing"], "mqar-cpu-tiny.json")
    script = SCRIPTS[0].parent / "recall_calibration.py"
    r = subprocess.run([sys.executable, str(script), "--profile", "cpu-tiny", "--task", "mqar", "--pairs", "8",
                        "--settings", "seq_len=64", "--report-only", "--out", str(ours), "--merge", str(theirs)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads((ours / "mqar-cpu-tiny.json").read_text())) == 3
    assert "weight decay 0.1" in (ours / "mqar-cpu-tiny.md").read_text()


def test_proxy_throughput_anchor_is_sized_like_the_proxies():
    """The plain Transformer anchor: 8 layers, head dim 64, d a multiple of 64, within 10% of the target
    size, and a loss a fresh model gives near ln(vocab)."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import torch
    from proxy_throughput import plain_transformer

    for target in (2.5e7, 1e8):  # at a few million, d in steps of 64 is too coarse for 10%
        model = plain_transformer(target, 256)
        d = model.embed.weight.shape[1]
        params = sum(p.numel() for p in model.parameters())
        assert d % 64 == 0 and len(model.blocks) == 8 and model.heads == d // 64
        assert abs(params - target) / target < 0.1, (target, params)
    torch.manual_seed(0)
    idx = torch.randint(0, 256, (2, 17))
    loss = plain_transformer(2.5e6, 256)(idx[:, :-1], idx[:, 1:])
    assert loss.ndim == 0 and 4.0 < loss.item() < 7.5


def test_early_stopping_replay_plays_successive_halving_over_the_table():
    """Rung 1/4 keeps the best n // eta by rank and crowding; the cost is the jobs it would run."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    from early_stopping import replay

    low = {"a": [0.9, 10.0], "b": [0.1, 1.0], "c": [0.5, 20.0], "d": [0.2, 2.0], "e": [0.3, 3.0], "f": [0.1, 2.0]}
    full = {"a": [0.95, 10.0], "b": [0.9, 1.0], "c": [0.6, 20.0], "d": [0.3, 2.0], "e": [0.4, 3.0], "f": [0.2, 2.0]}
    table = {0.25: {k: {"values": v, "seconds": 1.0} for k, v in low.items()},
             1.0: {k: {"values": v, "seconds": 3.0} for k, v in full.items()}}
    profile = {"name": "p", "params": 1e5, "lm": {"tokens": 4000}, "synthetic": {"tokens_per_task": 400,
               "tasks": [{"name": "mqar"}]}}
    r = replay(table, [0.25, 1.0], 3, profile)
    # a and c are the front at rung 0 (6 // 3 = 2 go on); b, the best at the full budget, was pruned
    assert (r["complete"], r["pruned"], r["job_s"]) == (2, 4, 6 * 1.0 + 2 * 3.0)
    assert r["tokens"] == 6 * 100 + 2 * 4400  # rung 0 trains the task alone (the objectives read no LM loss)
    assert r["hv"] == pytest.approx(0.95 * 10 + 0.6 * 10)  # the staircase of a (0.95, 10) and c (0.6, 20)


def test_compile_sm90_reports_registers_and_spills():
    """`--registers` assembles the PTX with Triton's bundled ptxas and prints a row of numbers per config."""
    script = Path(__file__).parents[1] / "benchmarks" / "compile_sm90.py"
    r = subprocess.run([sys.executable, str(script), "--registers", "--bf16-only", "--tiles", "0", "--warps", "4",
                        "--kernels", "delta_fwd_kernel_wu"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    rows = [line for line in r.stdout.splitlines() if line.startswith("| delta_fwd_kernel_wu |")]
    assert len(rows) == 1, r.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:8] == ["False, 64, 64", "bf16", "–", "64", "4", "2", "–"]  # ..., BV, warps, stages, maxnreg
    registers, spilled, shared = (int(c.replace(",", "")) for c in cells[8:11])
    assert 0 < registers <= 255 and spilled >= 0 and shared > 0 and float(cells[11]) >= 0


def test_compile_sm90_caps_registers_as_a_config_would():
    """`--maxnreg` compiles a config as `triton.Config(maxnreg=...)` does: ptxas holds the kernel to the cap (the
    SSD's dx kernel at the proxies' case, `--set` giving its constexprs: no z, no initial state)."""
    script = Path(__file__).parents[1] / "benchmarks" / "compile_sm90.py"
    r = subprocess.run([sys.executable, str(script), "--op", "ssd", "--registers", "--bf16-only", "--tiles", "0",
                        "--warps", "8", "--kernels", "ssd_bwd_kernel_dx", "--set", "HAS_Z=0,HAS_INIT=0,HAS_DFINAL=0",
                        "--maxnreg", "0,96"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    header = next(line for line in r.stdout.splitlines() if line.startswith("| kernel |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    rows = [dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))
            for line in r.stdout.splitlines() if line.startswith("| ssd_bwd_kernel_dx |")]
    assert [row["maxnreg"] for row in rows] == ["–", "96"], r.stdout
    free, capped = (int(row["registers"]) for row in rows)
    assert capped <= 96 < free, r.stdout  # uncapped, the kernel takes more than the cap allows


def test_compile_sm90_counts_the_scans_instructions_by_kind():
    """`--sass` disassembles the cubin: the scan's forward at 8 × 8 × 16 on one warp takes one `ex2` per element of
    its [BT, N, BD] tile and thread (8·16·8 / 32) on the special-function unit, besides SiLU's few."""
    script = Path(__file__).parents[1] / "benchmarks" / "compile_sm90.py"
    r = subprocess.run([sys.executable, str(script), "--op", "selective_scan", "--sass", "--bf16-only", "--tiles", "0",
                        "--warps", "1", "--kernels", "selective_scan_fwd_kernel"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    header = next(line for line in r.stdout.splitlines() if line.startswith("| kernel |"))
    row = next(line for line in r.stdout.splitlines() if line.startswith("| selective_scan_fwd_kernel |"))
    cells = dict(zip((c.strip() for c in header.strip("|").split("|")), (c.strip() for c in row.strip("|").split("|"))))
    assert cells["BT, BD, BN"] == "8, 8, 16" and cells["warps"] == "1"
    total, mufu = int(cells["instructions"].replace(",", "")), int(cells["ex2 and other MUFU"])
    assert 32 <= mufu <= 48 and total > mufu + int(cells["fp32"].replace(",", "")), cells
    assert int(cells["local (spills)"]) == 0 and cells["most frequent"], cells


def test_compile_sm90_compiles_the_mlstm_the_ssd_with_its_cb_kernel_the_conv_and_the_scan():
    script = Path(__file__).parents[1] / "benchmarks" / "compile_sm90.py"
    for op, kernels in (("mlstm", ("mlstm_fwd_kernel_states", "mlstm_bwd_kernel_dqk", "mlstm_bwd_kernel_gates")),
                        ("ssd", ("ssd_fwd_kernel_cb", "ssd_bwd_kernel_dx")),
                        ("conv1d", ("causal_conv1d_fwd_kernel", "causal_conv1d_bwd_kernel_g")),
                        ("selective_scan", ("selective_scan_fwd_kernel", "selective_scan_bwd_kernel"))):
        r = subprocess.run([sys.executable, str(script), "--op", op, "--smoke"], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
        for name in kernels:
            assert f"{name}: compiled" in r.stdout, r.stdout


def test_kernels_refuses_an_unknown_delta_shape_or_gate_or_a_chunk_it_would_not_run():
    script = str(SCRIPTS[0].parent / "kernels.py")
    for flag, value, said in (("--delta-shapes", "B9", "B9 is not a shape of the benchmark; use any of B8-T2048"),
                              ("--ssd-shapes", "B9", "--ssd-shapes: B9 is not a shape of the benchmark; use any of"),
                              ("--delta-gates", "heads", "--delta-gates 'heads': use head, channel or head,channel"),
                              ("--ssd-chunk-sizes", "64,128", "128 is more than the 64 tokens our kernels put in a")):
        r = subprocess.run([sys.executable, script, "--smoke", "--ops", "gated_delta", flag, value],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and said in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_kernels_times_other_forms_of_the_delta_wy_kernel_beside_the_default(tmp_path):
    """`--delta-variants`: a row of its own for each form, each checked against the reference."""
    r = subprocess.run([sys.executable, str(SCRIPTS[0].parent / "kernels.py"), "--smoke", "--ops", "gated_delta",
                        "--delta-gates", "head", "--delta-variants", "blocks:fused", "--out", str(tmp_path / "k.md")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    text = (tmp_path / "k.md").read_text()
    assert "| triton (ours), chunk 64 | — | — | — | — | — | checked |" in text
    assert "| triton (ours), chunk 64, blocks:fused | — | — | — | — | — | checked |" in text
    assert "decay per key channel" not in text


@pytest.mark.parametrize("op", ["ssd", "mlstm"])
def test_kernel_profile_runs_the_ssd_and_the_mlstm_and_refuses_what_only_the_delta_rule_has(op):
    script = str(SCRIPTS[0].parent / "kernel_profile.py")
    r = subprocess.run([sys.executable, script, "--op", op, "--smoke"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"the {op}'s forward and backward ran" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, script, "--op", op, "--wall"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"--op {op} profiles the forward and forward+backward only" in r.stderr, \
        r.stderr[-2000:]
    r = subprocess.run([sys.executable, script, "--op", op, "--smoke", "--shape", "4,2048"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "--shape '4,2048': " in r.stderr and "positive integers" in r.stderr, r.stderr[-2000:]


def test_the_scan_anchor_says_what_it_needs_to_be_built_and_loaded(tmp_path):
    """benchmarks/scan_anchor: build.sh without a mamba-ssm sdist, and the module without its library, each
    say in one sentence what to do (the build itself needs the sdist and nvcc, and runs by hand)."""
    folder = SCRIPTS[0].parent / "scan_anchor"
    env = {k: v for k, v in os.environ.items() if k != "MAMBA_SSM_SDIST"}
    for extra, said in (({}, "set MAMBA_SSM_SDIST"),
                        ({"MAMBA_SSM_SDIST": str(tmp_path)}, "point MAMBA_SSM_SDIST at an unpacked mamba-ssm sdist")):
        r = subprocess.run(["bash", str(folder / "build.sh")], capture_output=True, text=True, env={**env, **extra})
        assert r.returncode != 0 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    missing = tmp_path / "none.so"
    r = subprocess.run([sys.executable, "-c", "import selective_scan_cuda"], capture_output=True, text=True,
                       env={**env, "PYTHONPATH": str(folder), "HNAS_SCAN_ANCHOR_SO": str(missing)})
    assert r.returncode != 0
    assert "ImportError: the library is not built: build it with benchmarks/scan_anchor/build.sh" in r.stderr, r.stderr
    assert f"no {missing}" in r.stderr, r.stderr


class _ReferenceScanModule:
    """`selective_scan_cuda`'s fwd/bwd contract (channels-first bf16, B and C [B, G, N, L], out before the gate,
    dB/dC back in B's dtype) computed by the project's reference, for the anchor operators' plumbing on a CPU."""

    @staticmethod
    def _y(u, delta, A, B, C, D):
        from kernels.selective_scan.reference import selective_scan_blocked

        y, _ = selective_scan_blocked(u.transpose(1, 2).float(), delta.transpose(1, 2).float(), A,
                                      B.squeeze(1).transpose(1, 2).float(), C.squeeze(1).transpose(1, 2).float(), D=D)
        return y.transpose(1, 2)  # [B, Dc, L]

    @classmethod
    def fwd(cls, u, delta, A, B, C, D, z, delta_bias, softplus):
        import torch
        import torch.nn.functional as F

        assert u.dtype == delta.dtype == B.dtype == z.dtype == torch.bfloat16 and B.dim() == 4
        assert all(t.is_contiguous() for t in (u, delta, B, C, z)) and delta_bias is None and not softplus
        out = cls._y(u, delta, A, B, C, D)
        x = torch.zeros(*u.shape[:2], 1, 2 * A.shape[1])
        return [out.to(u.dtype), x, (out * F.silu(z.float())).to(u.dtype)]

    @classmethod
    def bwd(cls, u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, softplus, recompute_out_z):
        import torch
        import torch.nn.functional as F

        def vjp():  # on a thread of its own: an operator's body runs below autograd on the calling one
            leaves = [t.detach().float().requires_grad_() for t in (u, delta, A, B, C, D, z)]
            lu, ld, lA, lB, lC, lD, lz = leaves
            y = cls._y(lu, ld, lA, lB, lC, lD) * F.silu(lz)
            return torch.autograd.grad(y, leaves, dout.float())

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            grads = pool.submit(vjp).result()
        du, ddelta, dA, dB, dC, dD, dz = grads
        return [du.to(u.dtype), ddelta.to(delta.dtype), dA, dB.to(B.dtype), dC.to(C.dtype), dD, None,
                dz.to(z.dtype)]


def test_the_scan_anchor_operators_keep_the_projects_layout_and_gradients_and_compile_whole():
    """benchmarks/scan_anchor/ops.py, over a stand-in of mamba_ssm's module: the Mamba-1 proxy's call, in its
    channels-last layout, gives the reference's output and every gradient (bf16-rounded, as the anchor takes its
    inputs), traces whole under torch.compile(fullgraph=True), and the patch leaves workers.models.mamba1 as it was."""
    import torch
    from kernel_inputs import assert_compiles_whole, selective_scan_inputs

    import workers.models.mamba1 as mamba1
    from kernels.selective_scan.reference import selective_scan_blocked

    sys.path.insert(0, str(SCRIPTS[0].parent))
    from scan_anchor.ops import anchor_scan

    inputs = selective_scan_inputs(2, 40, 8, 4, None, "D-z")
    ours = mamba1.selective_scan
    with anchor_scan(_ReferenceScanModule):
        got = mamba1.selective_scan(**inputs)
        grads = torch.autograd.grad(got.float().square().sum(), list(inputs.values()))
        assert_compiles_whole(lambda **t: (mamba1.selective_scan(**t), ()), inputs)
        with pytest.raises(ValueError, match="Mamba-1's training call only"):
            mamba1.selective_scan(**inputs, return_final_state=True)
    assert mamba1.selective_scan is ours

    rounded = {k: (v.detach().to(torch.bfloat16).float() if k in ("u", "delta", "B", "C", "z") else v.detach())
               .requires_grad_() for k, v in inputs.items()}
    want = selective_scan_blocked(**rounded)[0]
    assert torch.allclose(got.float(), want, rtol=2e-2, atol=2e-2)
    ref_grads = torch.autograd.grad(want.square().sum(), list(rounded.values()))
    for name, g, r in zip(inputs, grads, ref_grads, strict=True):
        assert g.shape == r.shape and g.dtype == inputs[name].dtype, name
        assert (g.float() - r).abs().max() <= 3e-2 * r.abs().max() + 1e-3, name


def test_proxy_throughput_says_when_the_cuda_scan_row_has_no_library(tmp_path):
    """`proxy_throughput.py --mamba-scan-so` with no library there: the Mamba-1 row on mamba_ssm's scan says why,
    however long the path it looked at (the note keeps the error's first 120 characters)."""
    import argparse

    import torch

    sys.path.insert(0, str(SCRIPTS[0].parent))
    import proxy_throughput

    deep = tmp_path / ("d" * 100) / "none.so"
    args = argparse.Namespace(mamba_scan_so=str(deep), params=2e5, lengths=[32])
    row = proxy_throughput.cuda_scan_row(args, torch.device("cpu"))
    assert row.train_only and row.pattern == proxy_throughput.FAMILIES["mamba1"]
    assert "build it with benchmarks/scan_anchor/build.sh" in row.train[32]["eager note"]


def test_proxy_throughput_rounds_take_medians_and_each_ratio_against_its_own_rounds_anchor():
    """`--rounds`: a figure is its median over the rounds, a ratio the median of the rounds' ratios with their range,
    each round's against that round's anchor; a mode that failed in one round keeps the others' figure."""
    sys.path.insert(0, str(SCRIPTS[0].parent))
    import proxy_throughput as pt

    anchor, row = pt.Row(pt.ANCHOR, "", 64, 1), pt.Row("hybrid", "M-*-", 64, 1)
    anchor.rounds = [{2048: {"compiled": 100.0}}, {2048: {"compiled": 200.0}}, {2048: {"compiled": 100.0}}]
    row.rounds = [{2048: {"compiled": 80.0}}, {2048: {"compiled": 180.0}}, {2048: {"compiled note": "out of memory"}}]
    assert pt.ratios(row, anchor, 2048) == [0.8, 0.9]  # the third round has no figure of the hybrid's
    assert pt.ratio_cell(pt.ratios(row, anchor, 2048)) == "0.85 (0.80–0.90)"
    assert pt.ratio_cell(pt.ratios(anchor, anchor, 2048)) == "1.00" and pt.ratio_cell([]) == "–"
    assert pt.over_rounds([r[2048] for r in row.rounds]) == {"compiled": 130.0}
    assert pt.over_rounds([{"compiled": 1.0, "compile s": 40.0}, {"compiled": 3.0, "compile s": 2.0},
                           {"compiled": 2.0, "compile s": 3.0}]) == {"compiled": 2.0, "compile s": 40.0}
    assert pt.over_rounds([{"compiled note": "out of memory"}, {"compiled note": "out of memory"}]) == {
        "compiled note": "out of memory"}


def test_proxy_throughput_times_every_model_once_a_round():
    script = SCRIPTS[0].parent / "proxy_throughput.py"
    r = subprocess.run([sys.executable, str(script), "--smoke", "--families", "mamba2", "--rounds", "2", "--no-decode"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [line.split()[0] for line in r.stdout.splitlines() if "T32" in line and "tok/s" in line] == [
        "plain", "mamba2", "plain", "mamba2"]  # anchor, family; anchor, family
    assert "2 rounds, each timing the anchor and then every family" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("| mamba2 |"))
    assert re.search(r"\| \d\.\d\d( \(\d\.\d\d–\d\.\d\d\))? \|$", row), row
    r = subprocess.run([sys.executable, str(script), "--smoke", "--rounds", "0"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "--rounds: at least 1, got 0" in r.stderr


def test_proxy_throughput_times_a_pinned_width_beside_the_rules():
    """`NAME@dWIDTH`: the family at that d_model, its MLP absorbing the rest, in a row of its own beside the
    family at the width the scaling rule picks; an unknown family or a malformed width ends the run in a sentence."""
    script = SCRIPTS[0].parent / "proxy_throughput.py"
    r = subprocess.run([sys.executable, str(script), "--smoke", "--families", "mamba2,mamba2@d48", "--no-decode"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    widths = dict(re.findall(r"^(mamba2(?:@d48)?): M-M-M-M-M-M-M-M- d(\d+)", r.stdout, re.M))
    assert widths["mamba2@d48"] == "48" and widths["mamba2"] != "48", r.stdout
    assert re.search(r"^\| mamba2@d48 \|", r.stdout, re.M)
    for bad, says in (("mamba2@448", "a pinned width is written NAME@dWIDTH"), ("mamba3@d448", "unknown family")):
        r = subprocess.run([sys.executable, str(script), "--smoke", "--families", bad], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode != 0 and says in r.stderr, r.stderr[-2000:]


def test_layer_kernels_tables_an_ncu_csv_run(tmp_path):
    """`layer_kernels.py --table`: ncu's own lines skipped, one row a kernel in launch order, durations in µs
    whatever ncu's unit, a metric the run lacks a dash; a file without ncu's header is refused in one sentence."""
    head = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
            '"Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')

    def metric(i, kernel, name, unit, value):
        return (f'"{i}","1","python3","h","{kernel}","1","7","(128, 1, 1)","(32, 448, 1)","0","9.0","S",'
                f'"{name}","{unit}","{value}"')

    csv_text = "\n".join([
        "==PROF== Connected to process 1", "layer ran: conv and SSD, forward and backward", head,
        metric(0, "ssd_bwd_kernel_dx", "Duration", "us", "597.79"),
        metric(0, "ssd_bwd_kernel_dx", "Registers Per Thread", "register/thread", "168"),
        metric(0, "ssd_bwd_kernel_dx", "Theoretical Occupancy", "%", "18.75"),
        metric(1, "ssd_bwd_kernel_dbc", "Duration", "ms", "1.25"),
        metric(2, "tiny", "Duration", "ns", "4,830"),
    ])
    path = tmp_path / "ncu.csv"
    path.write_text(csv_text)
    script = SCRIPTS[0].parent / "layer_kernels.py"
    r = subprocess.run([sys.executable, str(script), "--table", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split(" | ") for line in r.stdout.splitlines() if line.startswith("| `")]
    assert [(row[0], row[3]) for row in rows] == [
        ("| `ssd_bwd_kernel_dx`", "597.8"), ("| `ssd_bwd_kernel_dbc`", "1250.0"), ("| `tiny`", "4.8")]
    assert rows[0][8:10] == ["168", "18.75"] and rows[1][8] == "–"  # registers, occupancy; dbc's not in the run
    path.write_text("Time,Kernel\n1,dx\n")
    r = subprocess.run([sys.executable, str(script), "--table", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no ncu CSV header" in r.stderr and "run ncu with --csv" in r.stderr


def test_proxy_throughput_reports_the_configs_its_kernels_ran_with(monkeypatch):
    """The report ends with each autotuned kernel's config at each key of the run (none on a run that tuned
    nothing)."""
    import argparse
    import types

    import torch
    import triton
    import triton.language as tl

    sys.path.insert(0, str(SCRIPTS[0].parent))
    import proxy_throughput as pt

    from kernels._triton import tiles

    @triton.jit
    def _k(x_ptr, N, BN: tl.constexpr):
        pass

    args = argparse.Namespace(params=2e5, train=True, tokens_per_step=64, steps=1, warmup=1, compile=False, rounds=1,
                              lengths=[32], decode_batch=2, decode_tokens=2, contexts=[16], hbm_tb_s=4.8)
    anchor = pt.Row(pt.ANCHOR, "", 64, 1, rounds=[{32: {"eager": 10.0}}])
    assert not any("tuned kernels" in line for line in pt.report([anchor], args, torch.device("cpu")))
    kernel = triton.autotune(tiles(("BN",), [(64,), (32,)], (4, 2)), key=["N"])(_k)
    kernel.cache[(2048, "torch.bfloat16")] = kernel.configs[1]
    monkeypatch.setitem(sys.modules, "kernels.fake.triton", types.SimpleNamespace(fake_kernel=kernel))
    lines = pt.report([anchor], args, torch.device("cpu"))
    assert "## The project's tuned kernels in this run" in lines
    assert "| `fake_kernel` | 2048 | BN 32, 4 warps, 2 stages |" in lines
