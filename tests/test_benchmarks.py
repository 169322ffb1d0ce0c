"""Every script in benchmarks/ runs with --smoke (tiny sizes, CPU) and exits 0."""

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
