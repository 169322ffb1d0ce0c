"""Bounded input: a spec (or a space, profile or architecture file) is refused in one sentence, quickly and
with nothing written, when it is too large, nests YAML aliases, is binary or is not UTF-8; a message
about a file never repeats what the file holds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from studyutil import SPACE, micro_profile

from nas.spec import load_spec, spec_from_text
from search_spaces import ArchConfig
from search_spaces.config import MAX_CONFIG_BYTES, ConfigError

# a kilobyte that a plain YAML loader expands into 10^9 list items
LAUGHS = "name: lol\nspace: hybrid-ratio\n" + "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
)


def spec_text(**kw) -> str:
    data = {"name": "bounded", "space": SPACE, "budget": {"trials": 2}, "profile": micro_profile(), **kw}
    return yaml.safe_dump(data, sort_keys=False)


def nas(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def one_sentence(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    return r.stderr


def test_nested_aliases_are_refused_at_once():
    assert len(LAUGHS) < 1200
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"at line 4: aliases \(\*a0\) are not accepted; write the value out"):
        spec_from_text(LAUGHS, "the spec")
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(ConfigError, match="aliases"):  # an architecture file too
        ArchConfig.from_yaml("base: &b {pattern: M-, d_model: 64}\nother: *b\n")


def test_an_anchor_without_alias_is_plain_yaml():
    spec = spec_from_text(spec_text().replace("name: bounded", "name: &n bounded", 1))
    assert spec.name == "bounded"


def test_a_spec_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    big = spec_text(description="x" * (MAX_CONFIG_BYTES + 10))
    with pytest.raises(ConfigError, match=r"over the limit of 256 KB"):
        spec_from_text(big)
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 100) + spec_text())
    r = nas("run", str(path), cwd=tmp_path)
    assert "over the limit of 256 KB" in one_sentence(r) and "big.yaml" in r.stderr
    assert not (tmp_path / ".nas").exists()  # nothing written


@pytest.mark.parametrize("content,label", [
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "binary"),
    ("name: caf\xe9\n".encode("latin-1"), "latin-1"),
    (b"name: x\x00\n", "a NUL byte"),
])
def test_a_binary_or_non_utf8_spec_is_one_sentence_and_exit_2(tmp_path, content, label):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_spec(path)
    r = nas("run", str(path), cwd=tmp_path)
    assert "is not UTF-8 text (a binary file?)" in one_sentence(r), label
    assert not (tmp_path / ".nas").exists()


def test_errors_about_a_file_name_the_key_never_the_files_values(tmp_path):
    secret = tmp_path / "creds.yaml"
    secret.write_text("name: {password: hunter2-planted}\n")
    for key in ("space", "profile"):
        data = {"name": "leak", "space": "hybrid-ratio", key: str(secret)}
        with pytest.raises(ConfigError) as e:
            spec_from_text(yaml.safe_dump(data))
        assert "creds.yaml" in str(e.value) and "'name'" in str(e.value)
        assert "hunter2" not in str(e.value), str(e.value)


def test_long_or_nested_values_are_described_not_quoted():
    with pytest.raises(ConfigError) as e:
        spec_from_text(spec_text(concurrency={"nested": "value"}))
    assert "'concurrency' is a mapping" in str(e.value) and "nested" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        spec_from_text(spec_text(seed="s" * 100))
    assert "'seed' is a text of 100 characters" in str(e.value) and "sss" not in str(e.value)
    with pytest.raises(ConfigError, match="'seed' is 'abc'"):  # a short value of the user's own is quoted
        spec_from_text(spec_text(seed="abc"))


def test_text_from_a_remote_user_may_not_name_files_here(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    text = spec_text(space=str(path))
    assert spec_from_text(text).space == str(path)  # `nas run`: the user's own files
    with pytest.raises(ConfigError, match=r"names a file \(space: .*space.yaml\), which is not read here"):
        spec_from_text(text, files=False)
    for name in ("/proc/self/environ", "../../etc/passwd.yml"):
        with pytest.raises(ConfigError, match="which is not read here"):
            spec_from_text(spec_text(profile=name), files=False)
