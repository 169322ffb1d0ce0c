"""What a new user meets first: `nas --help`, and one sentence naming the file for a bad input."""

import subprocess
import sys

import pytest


def nas(*args, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


@pytest.mark.parametrize("command", [[], ["export"], ["run"], ["db"], ["eval"]], ids=lambda c: " ".join(c) or "nas")
def test_help_shows_no_type_beside_a_switch(command):
    r = nas(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert "--help" in r.stdout and "<bool>" not in r.stdout
    if command == ["export"]:
        assert "--pareto" in r.stdout and "<path>" in r.stdout  # valued options keep their type
    if not command:
        assert "--verbose" in r.stdout


def test_an_empty_arch_file_says_so(tmp_path):
    empty = tmp_path / "winner.yaml"
    empty.write_text("\n")
    r = nas("cost", "--arch", str(empty))
    assert r.returncode == 2 and "NoneType" not in r.stderr
    assert f"{empty} is empty" in r.stderr and "pattern and d_model" in r.stderr


def test_a_typo_in_an_arch_file_names_the_file(tmp_path):
    path = tmp_path / "winner.yaml"
    path.write_text("pattern: M-\nd_model: 64\nmamba2: {d_stat: 16}\n")
    r = nas("cost", "--arch", str(path))
    assert r.returncode == 2
    assert "architecture file winner.yaml: unknown key 'mamba2.d_stat'" in r.stderr and "d_state" in r.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("space: hybrid-ratio\nprofile: {name: p, lm: {seq_lenn: 3}}\n", "unknown key 'profile.lm.seq_lenn'"),
        ("space: {name: s, base: {d_model: 64, attention: {head: 2}}, dimensions: {layers: 2}}\n",
         "unknown key 'space.base.attention.head'"),
    ],
    ids=["profile", "space-base"],
)
def test_a_nested_typo_names_the_spec_file_and_the_key(tmp_path, text, words):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\n" + text)
    r = nas("run", str(path), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: study spec mine.yaml: ") and words in r.stderr, r.stderr
    assert not (tmp_path / ".nas").exists()
