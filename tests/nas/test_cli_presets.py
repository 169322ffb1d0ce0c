import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from nas.cli import app
from search_spaces import ArchConfig
from search_spaces.presets import PRESETS, preset

runner = CliRunner()


def nas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=120)


def test_presets_table_lists_every_preset_with_sizes_and_memory():
    r = runner.invoke(app, ["presets"])
    assert r.exit_code == 0, r.output
    for name in PRESETS:
        assert name in r.output
    for col in ("params", "active", "@4K", "@128K", "@1M"):
        assert col in r.output
    assert "51.6B" in r.output and "12.1B" in r.output  # Jamba total / active
    assert "64 GiB" in r.output  # Llama-2-7B's KV cache at 128K


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_yaml_loads_back_to_the_preset(name):
    r = runner.invoke(app, ["presets", name, "--yaml"])
    assert r.exit_code == 0, r.output
    assert ArchConfig.from_dict(yaml.safe_load(r.output)) == preset(name)


def test_preset_yaml_scaled():
    r = runner.invoke(app, ["presets", "jamba", "--yaml", "--params", "2M", "--vocab-size", "256"])
    assert r.exit_code == 0, r.output
    assert ArchConfig.from_yaml(r.output) == preset("jamba", 2e6, vocab_size=256)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["presets", "jamba2"], ["unknown preset 'jamba2'", "jamba"]),
        (["cost", "--pattern", "M-Q", "--d-model", "64"], ["unknown layer symbol 'Q' at position 2"]),
        (["cost", "--pattern", "M-M"], ["--d-model"]),
        (["cost", "--preset", "jamba", "--params", "lots"], ["'lots' is not a number"]),
        (["cost"], ["name exactly one architecture"]),
        (["presets", "--yaml"], ["name it"]),
    ],
)
def test_bad_input_is_one_sentence_and_exit_code_2(args, words):
    r = nas(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    msg = r.stderr.strip()
    assert msg.startswith("error:") and "Traceback" not in msg
    for w in words:
        assert w in msg


def test_cost_of_an_arch_file(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(preset("bamba", 2e6, vocab_size=256).to_yaml())
    r = runner.invoke(app, ["cost", "--arch", str(path)])
    assert r.exit_code == 0, r.output
    assert "mamba2" in r.output and "attention" in r.output and "128K" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("pattern: M-\nd_model: 64\nmoe: {experts: 4}\n")
    r = nas("cost", "--arch", str(bad))
    assert r.returncode == 2 and "no 'E'" in r.stderr
