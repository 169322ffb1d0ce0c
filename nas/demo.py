"""What `nas demo` says after its Pareto table: what the front shows, and what such a score is worth.

    for line in findings(spec):     # the demo study's spec, after its run
        print(line)

Everything is read from the finished study (`nas.reader`), so the sentences describe this run, not a
run someone made earlier.
"""

from __future__ import annotations

from nas import reader, units
from nas.spec import StudySpec
from workers.profile import load_profile

__all__ = ["chance", "findings"]

RECALL = "synthetic_accuracy"
SPEED = "decode_tps"


def chance(profile) -> float | None:
    """The recall a model scores by guessing, when the profile's only task is MQAR (a uniform guess among
    its values, the upper half of the vocabulary); None otherwise."""
    tasks = profile.synthetic.tasks
    if len(tasks) != 1 or tasks[0].name != "mqar":
        return None
    from workers.data.synthetic import make_task  # torch: loaded when the demo has finished

    vocab = make_task("mqar", **tasks[0].settings).vocab_size
    return 1 / (vocab - vocab // 2)


def _trials(numbers) -> str:
    shown = [str(n) for n in sorted(numbers)]
    return ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")


def findings(spec: StudySpec) -> list[str]:
    """Plain sentences on the finished study: which front trials carry attention, how the recall of
    attention-bearing trials compares with pure SSMs', and what the profile is for."""
    meta, df = reader.study_frame(spec.storage_url, spec.name)
    done = df[(df["status"] == "complete") & df["pattern"].notna()]
    profile = load_profile(spec.profile)
    lines: list[str] = []
    if done.empty:
        return ["No trial completed, so the front shows nothing yet."]
    front = done[done["pareto"]]
    with_attention, pure_front = front[front["attn_ratio"] > 0], front[front["attn_ratio"] == 0]
    n, k = len(front), len(with_attention)
    if k == 0:
        shows = ("its one trial is a pure SSM" if n == 1 else f"none of its {n} trials carries attention") + (
            f" (trial {_trials(pure_front['number'])}).")
    elif k == n:
        shows = ("its one trial carries" if n == 1 else f"all {n} of its trials carry") + (
            f" attention (trial {_trials(with_attention['number'])}).")
    else:
        shows = (
            f"{k} of its {n} trials {'carries' if k == 1 else 'carry'} attention "
            f"(trial {_trials(with_attention['number'])}); "
            + ("the other is a pure SSM" if n - k == 1 else "the others are pure SSMs")
            + f" (trial {_trials(pure_front['number'])})."
        )
    lines.append("What the front shows: " + shows)
    recall = RECALL if RECALL in meta.metrics else None
    if recall is not None:
        attn, pure = done[done["attn_ratio"] > 0][recall], done[done["attn_ratio"] == 0][recall]
        guess = chance(profile)
        parts = []
        if len(attn):
            parts.append(f"trials with attention {attn.mean():.3f} on average ({len(attn)}, best {attn.max():.3f})")
        if len(pure):
            parts.append(f"pure SSMs {pure.mean():.3f} ({len(pure)}, best {pure.max():.3f})")
        verdict = ""
        if len(attn) and len(pure):
            verdict = (" Attention recalls better in this run." if attn.mean() > pure.mean()
                       else " Attention shows no recall advantage in this run.")
        lines.append(
            f"Recall ({recall}): " + "; ".join(parts)
            + (f"; guessing scores {guess:.3f}." if guess is not None else ".") + verdict
        )
    if SPEED in meta.metrics and done[done["attn_ratio"] == 0].size and done[done["attn_ratio"] > 0].size:
        ctx = max(profile.throughput.contexts)
        speed_a = done[done["attn_ratio"] > 0][SPEED].mean()
        speed_p = done[done["attn_ratio"] == 0][SPEED].mean()
        lines.append(
            f"Decode speed at {ctx:,} tokens of context: {speed_p:,.0f} tokens/s for pure SSMs against "
            f"{speed_a:,.0f} with attention, on average."
        )
    if profile.device == "cpu":
        lines.append(
            f"Profile {profile.name} is for trying the tool, not for ranking architectures: proxies of "
            f"{units.count(profile.params)} parameters trained for seconds on a CPU, whose scores move with the "
            "seed (docs/benchmarks/demo_recall.md measures them). Rank architectures on a GPU profile such as "
            "gpu-small (docs/proxy-evidence.md)."
        )
    else:
        lines.append(
            f"Profile {profile.name} is a first look: proxies of {units.count(profile.params)} parameters trained "
            f"on {units.count(profile.lm.tokens)} tokens; rank architectures on gpu-small (docs/proxy-evidence.md), "
            "and see what a study costs on an H200 in docs/gpu-studies.md."
        )
    return lines
