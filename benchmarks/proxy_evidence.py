"""Does the proxy score measure what matters? Six families at one parameter count, one profile.

    python benchmarks/proxy_evidence.py --profile cpu-tiny            # ~3 min on 2 CPU cores
    python benchmarks/proxy_evidence.py --profile gpu-small           # on one H200
    python benchmarks/proxy_evidence.py --profile cpu-tiny --smoke    # seconds (CI)
    python benchmarks/proxy_evidence.py --profile gpu-small --seeds 0,1,2   # each family over three seeds

Pure attention, pure Mamba-2, pure mLSTM, a 1:7 Mamba-2 : attention hybrid, pure Gated DeltaNet and a
3:1 Gated DeltaNet : attention hybrid, each eight (mixer, MLP) layers, widened to the profile's parameter
count by the presets' scaling rule, trained and scored by `workers.evaluate` exactly as a study's trial is.
`--families` also takes NAME=PATTERN[;family.option=value...] for any other layout
(`"1:7 no norm=M-M-M-M-*-M-M-M-;mamba2.norm=none"`). Writes `docs/proxy-evidence/<profile>.{md,json}`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# the project's `kernels` package, not this folder's kernels.py (a script's folder comes first)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from _report import command, machine, write

from nas import units as fmt
from search_spaces import ArchConfig, ConfigError
from search_spaces.scaling import scale
from workers.evaluate import evaluate
from workers.profile import load_profile

_OPTIONS = {
    "attention": {"heads": 8, "kv_heads": 8, "pos": "rope"},
    "mamba2": {"d_state": 64, "head_dim": 64, "expand": 2, "chunk_size": 64},
    "mlstm": {"heads": 4},
    "deltanet": {"heads": 4},
}
FAMILIES = {
    "attention": "*-" * 8,
    "mamba2": "M-" * 8,
    "mlstm": "X-" * 8,
    "hybrid 1:7": "M-M-M-M-*-M-M-M-",
    "gated deltanet": "D-" * 8,
    "hybrid 3:1 GDN": "D-D-D-*-D-D-D-*-",  # Qwen3-Next's ratio
}


def arch(pattern: str, params: float, vocab_size: int = 256, width: int | None = None,
         options: dict[str, dict[str, str]] | None = None) -> ArchConfig:
    """`pattern` at `params` by the scaling rule; `width` pins d_model (the MLP alone absorbing the rest); `options`
    ({'mamba2': {'norm': 'none'}}) over the family options above."""
    opts = {family: {**_OPTIONS.get(family, {}), **(options or {}).get(family, {})}
            for family in {*_OPTIONS, *(options or {})}}
    cfg = ArchConfig.compose(pattern, 512, **opts)
    for family in options or {}:
        if getattr(cfg, family, None) is None:
            raise ConfigError(f"{family} options are given, and the layout {pattern} has no {family} layer")
    return scale(cfg, params, vocab_size=vocab_size, width=width)


def layout(text: str) -> tuple[str, dict[str, dict[str, str]]]:
    """A named layout as the command line gives it, `PATTERN;family.option=value;...`, as its pattern and options:
    'M-M-M-M-*-M-M-M-;mamba2.norm=none' -> ('M-M-M-M-*-M-M-M-', {'mamba2': {'norm': 'none'}})."""
    pattern, *items = text.split(";")
    options: dict[str, dict[str, str]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        family, dot, key = name.strip().partition(".")
        if not (eq and dot and family and key and value.strip()):
            raise ConfigError(f"{item!r} is not family.option=value (mamba2.norm=none)")
        options.setdefault(family, {})[key] = value.strip()
    return pattern.strip(), options


def spelled(options: dict[str, dict[str, str]]) -> str:
    """A layout's options as a report prints them after its pattern: ' mamba2.norm=none'."""
    return "".join(f" {family}.{key}={value}" for family, o in options.items() for key, value in o.items())


def order(family: str) -> tuple[int, str]:
    """Where a family's row goes: the families above in their order, then named layouts by name."""
    return (list(FAMILIES).index(family), "") if family in FAMILIES else (len(FAMILIES), family)


def seed_of(row: dict) -> int:
    return row.get("seeds", {}).get("model", 0)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's τ-a of two scorings of the same items: concordant minus discordant pairs over all pairs."""
    n = len(a)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    signs = [((a[i] > a[j]) - (a[i] < a[j])) * ((b[i] > b[j]) - (b[i] < b[j])) for i, j in pairs]
    return sum(signs) / len(pairs) if pairs else float("nan")


def spread_section(rows: list[dict], tasks: list[str]) -> list[str]:
    """Each family's mean ± standard deviation over its seeds, and how stable the families' ranking is
    between seeds (Kendall τ over every pair of seeds that ran every family)."""
    ok = [r for r in rows if r["status"] == "ok"]
    by_family: dict[str, list[dict]] = {}
    for r in ok:
        by_family.setdefault(r["family"], []).append(r)
    if not any(len(v) > 1 for v in by_family.values()):
        return []
    metrics = {"LM loss": lambda r: r["lm"]["val_loss"], "mean acc": lambda r: r["synthetic_accuracy"]}
    metrics.update({t: (lambda r, t=t: r["tasks"][t]["accuracy"] if t in r["tasks"] else None) for t in tasks})
    head = ["family", "seeds", *metrics]
    lines = ["", "### Spread over seeds", "", "Mean ± sample standard deviation over each family's seeds.", "",
             "| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for family, runs in by_family.items():
        cells = [family, ",".join(str(seed_of(r)) for r in sorted(runs, key=seed_of))]
        for get in metrics.values():
            xs = [x for x in map(get, runs) if x is not None]
            cells.append("" if not xs else f"{statistics.mean(xs):.3f}" + (
                f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({seed_of(r) for r in ok})
    full = [s for s in seeds if all(any(seed_of(r) == s for r in runs) for runs in by_family.values())]
    if len(full) > 1 and len(by_family) > 2:
        lines += ["", "Rank stability of the families between seeds (Kendall τ, 1 = the same order):", ""]
        for name in ("LM loss", "mean acc"):
            taus = []
            for i, s1 in enumerate(full):
                for s2 in full[i + 1:]:
                    pick = {s: [metrics[name](next(r for r in by_family[f] if seed_of(r) == s)) for f in by_family]
                            for s in (s1, s2)}
                    taus.append(kendall_tau(pick[s1], pick[s2]))
            lines.append(f"- {name}: τ {', '.join(f'{t:.2f}' for t in taus)} over {len(taus)} pair(s) of seeds "
                         f"({len(by_family)} families)")
    return lines


def render(profile, rows: list[dict], budget: float, seconds: float, device: str) -> str:
    tasks = sorted({t for r in rows for t in r["tasks"]})
    all_rows = rows
    first = {}
    for r in sorted(rows, key=seed_of):  # the main table: each family's first seed
        first.setdefault(r["family"], r)
    rows = [r for r in all_rows if first[r["family"]] is r]
    contexts = sorted({t["context"] for r in rows for t in r["throughput"]})
    head = ["family", "pattern", "d_model", "params", "LM loss", "bpb", *tasks, "mean acc", "train tok/s"]
    head += [f"decode tok/s @{fmt.context(c)}" for c in contexts]
    head += [f"KV+state @{fmt.context(c)}" for c in contexts]
    lines = [
        f"## profile `{profile.name}`" + (f" at {budget:g}× its token budgets" if budget != 1 else ""),
        "",
        f"`{command()}` on {device}; {seconds / 60:.1f} min in all, the rows of other families or seeds kept from "
        "earlier runs of the JSON.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * 2 + "---:|" * (len(head) - 2),
    ]
    for r in rows:
        tp = {t["context"]: t for t in r["throughput"]}
        cells = [r["family"], f"`{r['pattern']}`{spelled(r.get('options', {}))}", str(r["arch"]["d_model"]),
                 fmt.count(r["params"])]
        if r["status"] != "ok":
            cells += [f"failed: {r['failure']['reason']}"] + [""] * (len(head) - 5)
        else:
            cells += [f"{r['lm']['val_loss']:.3f}", f"{r['lm']['bits_per_byte']:.3f}"]
            cells += [f"{r['tasks'][t]['accuracy']:.3f}" if t in r["tasks"] else "" for t in tasks]
            cells += [f"{r['synthetic_accuracy']:.3f}", fmt.count(r["lm"]["train_tokens_per_s"])]
            cells += [fmt.count(tp[c]["decode_tokens_per_s"]) for c in contexts]
            cells += [fmt.nbytes(tp[c]["kv_state_bytes"]) for c in contexts]
        lines.append("| " + " | ".join(cells) + " |")
    lines += spread_section(all_rows, tasks)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu-tiny")
    ap.add_argument("--budget", type=float, default=1.0, help="scale every token budget of the profile")
    ap.add_argument("--smoke", action="store_true", help="tiny budgets and sizes; writes nothing")
    ap.add_argument("--out", type=Path, default=Path("docs/proxy-evidence"))
    ap.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help="a comma-separated subset; rows of earlier runs in the JSON are kept",
    )
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds to train each family with (default: the profile's seed); "
                         "rows of other seeds in the JSON are kept, and two or more give a spread section")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    try:
        seeds = [profile.seed] if args.seeds is None else [int(x) for x in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds: comma-separated integers (0,1,2), got {args.seeds!r}") from None
    budget = 0.02 if args.smoke else args.budget
    params = 5e4 if args.smoke else profile.params
    device = machine(gpu=True)
    json_path = args.out / f"{profile.name}.json"
    rows = json.loads(json_path.read_text()) if json_path.exists() and not args.smoke else []
    chosen = [f.split("=", 1)[0] for f in args.families.split(",")]
    layouts = dict(f.split("=", 1) for f in args.families.split(",") if "=" in f)
    unknown = [f for f in chosen if f not in FAMILIES and f not in layouts]
    if unknown:
        raise SystemExit(f"unknown family {unknown[0]!r}; choose from {', '.join(FAMILIES)}, or give "
                         "NAME=PATTERN (options after it by ';': 1:7 no norm=M-M-M-M-*-M-M-M-;mamba2.norm=none)")
    configs, options = {}, {}
    for family in chosen:  # every layout built before any training: a typo costs no GPU time
        try:
            pattern, options[family] = layout(layouts[family]) if family in layouts else (FAMILIES[family], {})
            configs[family] = arch(pattern, params, options=options[family])
        except ConfigError as e:
            raise SystemExit(f"--families {family}={layouts.get(family)}: {e}") from None
    rows = [r for r in rows if not (r["family"] in chosen and seed_of(r) in seeds)]
    for family in chosen:
        cfg = configs[family]
        for seed in seeds:
            r = evaluate(cfg, profile, budget=budget, seed=seed)
            row = {"family": family, **({"options": options[family]} if options[family] else {}),
                   **json.loads(r.model_dump_json())}
            rows.append(row)
            acc = f"{r.synthetic_accuracy:.3f}" if r.synthetic_accuracy is not None else "-"
            print(
                f"{family:12s} seed {seed} d={cfg.d_model:4d} {fmt.count(r.params):>6s} {r.status:6s} "
                f"lm={r.lm.val_loss if r.lm else float('nan'):.3f} acc={acc} {r.wall_seconds:.0f}s",
                flush=True,
            )
            if not args.smoke:  # every result kept as it comes: a run cut short loses no finished trial
                json_path.parent.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps(rows, indent=1) + "\n")
    rows.sort(key=lambda r: (order(r["family"]), seed_of(r)))
    md = render(profile, rows, budget, sum(r["wall_seconds"] for r in rows), device)
    print(md)
    if not args.smoke:
        write(args.out / f"{profile.name}.md", md.splitlines())
        write(args.out / f"{profile.name}.json", [json.dumps(rows, indent=1)])


if __name__ == "__main__":
    main()
