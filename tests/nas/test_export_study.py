"""`nas export --study S --pareto`: every winner the format can hold is written, every other one is named
by its trial number with the reason; exit 2 and nothing written only when none can be."""

import json
import os
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from studyutil import make_spec

from nas import record, store
from nas.export import export_study
from search_spaces import ArchConfig, ConfigError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
BASE = {"d_model": 32, "vocab_size": 64, "attention": {"heads": 2}}
MLSTM_ATTN = {**BASE, "pattern": "X-*-", "mlstm": {"heads": 2}}  # no transformers class mixes mLSTM with attention
MAMBA2 = {**BASE, "pattern": "M-*-", "mamba2": {"d_state": 8, "head_dim": 16, "chunk_size": 16}}
# q/k widths of 16, which the xLSTM class would round up to 64
XLSTM = {"d_model": 32, "vocab_size": 64, "pattern": "X-X-", "mlstm": {"heads": 2}}


def nas(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nas.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)


def front_of(urls, archs: list[dict]) -> str:
    """A study whose complete trials are `archs`, each on the Pareto front (accuracy up, speed down)."""
    spec = make_spec(urls, name="front")
    study = store.open_study(spec).study
    n = len(archs)
    study.add_trials([
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            params={"layers": 2},
            distributions={"layers": CategoricalDistribution([2])},
            values=[0.1 + i / n, 1000.0 - 100 * i],
            user_attrs={record.ARCH: ArchConfig.from_dict(a).to_dict(), record.PATTERN: a["pattern"]},
        )
        for i, a in enumerate(archs)
    ])
    return urls["storage"]


def test_pareto_writes_every_expressible_winner_and_names_the_others(urls, tmp_path):
    storage = front_of(urls, [MLSTM_ATTN, MAMBA2])
    out = tmp_path / "winners"
    r = nas("export", "--study", "front", "--pareto", "--format", "hf", "--storage", storage, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["trial-1"]
    assert json.loads((out / "trial-1" / "config.json").read_text())["model_type"] == "bamba"
    assert "trial 0 (X-*-): no Hugging Face class can express mLSTM mixed with attention" in r.stderr
    assert "--format yaml" in r.stderr and "Traceback" not in r.stderr
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out / "trial-1").model_type == "bamba"

    done = export_study(storage, "front", "hf", tmp_path / "again")
    assert sorted(done.skipped) == [0] and [p.parent.name for p in done.written] == ["trial-1", "trial-1"]


def test_pareto_with_no_expressible_winner_is_exit_2_and_nothing_written(urls, tmp_path):
    storage = front_of(urls, [MLSTM_ATTN, XLSTM])
    out = tmp_path / "winners"
    r = nas("export", "--study", "front", "--pareto", "--format", "hf", "--storage", storage, "--out", str(out))
    assert r.returncode == 2 and not out.exists()
    msg = r.stderr.strip()
    assert msg.startswith("error: none of the 2 Pareto trials of front can be written as --format hf")
    assert "trial 0 (X-*-)" in msg and "trial 1 (X-X-)" in msg and "multiples of 64" in msg
    with pytest.raises(ConfigError, match="trial 0 of front"):
        export_study(storage, "front", "megatron", tmp_path / "m", trial=0)
    assert not (tmp_path / "m").exists()


def test_one_trial_that_cannot_be_written_is_named(urls, tmp_path):
    storage = front_of(urls, [MLSTM_ATTN, MAMBA2])
    r = nas("export", "--study", "front", "--trial", "0", "--format", "megatron", "--storage", storage,
            "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and not (tmp_path / "m").exists()
    assert "trial 0 of front (X-*-): Megatron-LM's hybrid models have no mLSTM layer" in r.stderr
