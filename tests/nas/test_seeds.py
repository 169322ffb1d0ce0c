"""`nas seeds`: each metric's spread over seeds and the seeds' rank agreement, from a study's store."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import kendalltau
from studyutil import add_finished, make_spec

from nas.seeds import default_metrics, seed_report
from search_spaces import ConfigError

CELLS = [("0", "mamba2"), ("0", "mlstm"), ("1:1", "mamba2"), ("1:1", "mlstm"), ("all", "mamba2")]


def study_with_seeds(urls, per_seed, name="noisy"):
    """One finished trial per row of `per_seed` (its metrics for seeds 0, 1, 2), each a different architecture."""
    spec = make_spec(urls, name=name, objectives=[{"metric": "lm_loss"}])
    rows = []
    for (ratio, ssm), by_seed in zip(CELLS, per_seed, strict=False):
        mean = {m: float(np.mean([s[m] for s in by_seed])) for m in by_seed[0]}
        rows.append({"params": {"attn_ratio": ratio, "ssm": ssm}, "pattern": f"{ratio}-{ssm}", "metrics": mean,
                     "attrs": {"seed_metrics": {str(i): s for i, s in enumerate(by_seed)}}})
    add_finished(spec, rows)
    return spec


def test_spread_separation_and_tau_by_hand(urls):
    loss = [[3.0, 3.2, 3.1], [2.0, 2.1, 2.3], [1.0, 1.4, 1.2], [4.0, 3.9, 4.4]]
    acc = [[0.1, 0.5, 0.3], [0.2, 0.1, 0.6], [0.3, 0.4, 0.1], [0.4, 0.2, 0.5]]
    spec = study_with_seeds(urls, [[{"lm_loss": x, "acc.mqar": y} for x, y in zip(xs, ys, strict=True)]
                                   for xs, ys in zip(loss, acc, strict=True)])
    rows = {r.metric: r for r in seed_report(spec.storage_url, spec.name)}
    assert list(rows) == ["lm_loss", "acc.mqar"]  # the objective first, then the recall tasks
    r = rows["lm_loss"]
    assert (r.archs, r.seeds) == (4, 3)
    sds = [np.std(x, ddof=1) for x in loss]
    assert r.sd == pytest.approx(np.median(sds))
    assert r.mean == pytest.approx(np.mean(loss))
    assert r.rel_sd == pytest.approx(np.median([s / np.mean(x) for s, x in zip(sds, loss, strict=True)]))
    means = [np.mean(x) for x in loss]
    assert r.separation == pytest.approx(np.std(means, ddof=1) / np.sqrt(np.mean(np.square(sds))))
    assert r.tau == 1.0 and r.tau_min == 1.0  # every seed orders the four losses alike
    a = rows["acc.mqar"]  # the seeds disagree: τ over the three pairs of seeds, by scipy
    cols = np.array(acc).T
    taus = [kendalltau(cols[i], cols[j]).statistic for i, j in ((0, 1), (0, 2), (1, 2))]
    assert a.tau == pytest.approx(np.mean(taus)) and a.tau_min == pytest.approx(min(taus))
    assert a.separation < 1 < r.separation


def test_the_cli_prints_the_table_and_names_a_missing_metric(urls):
    per_seed = [[{"lm_loss": 3.0 + i + 0.1 * s} for s in range(3)] for i in range(3)]
    spec = study_with_seeds(urls, per_seed)
    run = subprocess.run([sys.executable, "-m", "nas.cli", "seeds", spec.name, "--storage", spec.storage_url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Seed noise of noisy: 3 architectures, 3 seeds" in run.stdout and "lm_loss" in run.stdout
    each = subprocess.run([sys.executable, "-m", "nas.cli", "seeds", spec.name, "--archs", "--storage",
                           spec.storage_url], capture_output=True, text=True, timeout=120)
    assert each.returncode == 0, each.stderr
    assert "2 1:1-mamba2" in each.stdout and "5.1 ± 0.1" in each.stdout  # trial 2: 5.0, 5.1, 5.2
    bad = subprocess.run([sys.executable, "-m", "nas.cli", "seeds", spec.name, "--metric", "acc.nope",
                          "--storage", spec.storage_url], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no trial of 'noisy' has 'acc.nope' from two seeds" in bad.stderr + bad.stdout


def test_a_study_of_one_seed_is_refused_in_one_sentence(urls):
    spec = make_spec(urls, name="single", objectives=[{"metric": "lm_loss"}])
    add_finished(spec, [{"params": {"attn_ratio": "0", "ssm": "mamba2"}, "pattern": "M-M-",
                         "metrics": {"lm_loss": 3.0}}])
    with pytest.raises(ConfigError, match="no complete trial trained with two seeds or more; give its spec `seeds: 3`"):
        seed_report(spec.storage_url, spec.name)


def test_default_metrics_skip_what_no_seed_measured():
    values = {"1": {0: {"lm_loss": 1.0, "decode_tps": 9.0, "acc.b": 0.1, "acc.a": 0.2}}}
    assert default_metrics(["decode_tps"], values) == ["decode_tps", "lm_loss", "acc.a", "acc.b"]
