"""Language-modelling corpora: byte-level text (vocabulary 256) or a user's token file.

`stdlib` (the default) is the running interpreter's own standard library: its source and documentation
files, tests and site-packages left out — about 12 MB on CPython 3.11, present on every machine, no
download. A user's corpus is a directory or glob of text files (bytes, vocabulary 256), or a token file
(`.bin` of uint8 / uint16 tokens, `.npy` of either) with its vocabulary size.

Documents (files) go to validation or training by a hash of their relative path, so the split is
deterministic and does not move when files are added. A token file has no documents: its blocks of
65,536 tokens are the documents. Documents are joined with a 0 byte between them.
"""

from __future__ import annotations

import functools
import glob as globlib
import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Corpus", "CorpusError", "load_corpus"]

TEXT_SUFFIXES = {".py", ".txt", ".rst", ".md", ".html", ".css"}
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "_bundled"}
TOKEN_BLOCK = 65_536
SEPARATOR = 0


class CorpusError(ValueError):
    """A corpus that cannot be read; the message says which and how to fix it."""


@dataclass(frozen=True)
class Corpus:
    """Token streams of one corpus: `train` and `val` are 1-D integer arrays."""

    name: str
    vocab_size: int
    train: np.ndarray
    val: np.ndarray
    fingerprint: dict  # files, bytes (or tokens), sha256 — recorded in every TrialResult
    bytes_per_token: float = 1.0  # 1 for byte-level text: bits per token are bits per byte

    def batch(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random training windows: inputs and next-token targets, each [B, T]."""
        hi = len(self.train) - seq_len - 1
        starts = torch.randint(0, hi, (batch_size,), generator=generator).numpy()
        rows = np.stack([self.train[s : s + seq_len + 1] for s in starts]).astype(np.int64)
        x = torch.from_numpy(rows)
        return x[:, :-1], x[:, 1:]

    def val_batches(self, tokens: int, batch_size: int, seq_len: int):
        """Consecutive validation windows covering the first `tokens` tokens (the same every time)."""
        n = min(tokens, len(self.val) - 1) // seq_len
        if n == 0:
            raise CorpusError(
                f"the validation split of corpus {self.name!r} has {len(self.val)} tokens, fewer than one "
                f"sequence of {seq_len}; use a larger corpus or a shorter seq_len"
            )
        rows = torch.from_numpy(self.val[: n * seq_len + 1].astype(np.int64))
        x, y = rows[:-1].view(n, seq_len), rows[1:].view(n, seq_len)
        for i in range(0, n, batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]


def _in_val(rel: str, val_fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


def _stdlib_files() -> tuple[Path, list[Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP and not d.startswith("config-"))
        files += [Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix in TEXT_SUFFIXES]
    return root, files


def _text_files(spec: str) -> tuple[Path, list[Path]]:
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return path, files
    matches = sorted(Path(p) for p in globlib.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
    if not matches:
        raise CorpusError(
            f"corpus {spec!r} is neither a directory, a token file nor a glob that matches files; "
            "give 'stdlib', a directory of text files, a glob like 'data/**/*.txt', or a .bin/.npy token file"
        )
    return Path(os.path.commonpath([str(m.parent) for m in matches])), matches


def _from_documents(name: str, root: Path, files: list[Path], val_fraction: float) -> Corpus:
    train, val = [], []
    digest = hashlib.sha256()
    total = 0
    for f in files:
        data = f.read_bytes()
        rel = f.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        total += len(data)
        (val if _in_val(rel, val_fraction) else train).append(data)
    if not train or not val:
        raise CorpusError(
            f"corpus {name!r} has {len(files)} file(s), too few to hold out {val_fraction:.0%} of them for "
            "validation; add files or set a larger val_fraction"
        )
    sep = bytes([SEPARATOR])
    as_array = lambda docs: np.frombuffer(sep.join(docs), dtype=np.uint8)  # noqa: E731
    fingerprint = {"files": len(files), "bytes": total, "sha256": digest.hexdigest()}
    return Corpus(name, 256, as_array(train), as_array(val), fingerprint)


def _from_tokens(path: Path, vocab_size: int | None, val_fraction: float) -> Corpus:
    if vocab_size is None:
        raise CorpusError(f"token file {path} needs its vocabulary size; set vocab_size in the profile's lm section")
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r")
    else:
        dtype = np.uint8 if vocab_size <= 256 else np.uint16
        tokens = np.memmap(path, dtype=dtype, mode="r")
    if tokens.dtype not in (np.uint8, np.uint16) or tokens.ndim != 1:
        raise CorpusError(f"token file {path} must hold a 1-D array of uint8 or uint16 tokens, not {tokens.dtype}")
    top = int(tokens.max()) if len(tokens) else 0
    if top >= vocab_size:
        raise CorpusError(f"token file {path} has token id {top}, outside its stated vocabulary of {vocab_size}")
    blocks = [tokens[i : i + TOKEN_BLOCK] for i in range(0, len(tokens), TOKEN_BLOCK)]
    val = [b for i, b in enumerate(blocks) if _in_val(str(i), val_fraction)]
    train = [b for i, b in enumerate(blocks) if not _in_val(str(i), val_fraction)]
    if not train or not val:
        raise CorpusError(
            f"token file {path} has {len(tokens)} tokens in {len(blocks)} block(s) of {TOKEN_BLOCK}, too few to "
            f"hold out {val_fraction:.0%} for validation; use a larger file"
        )
    digest = hashlib.sha256()
    for b in blocks:
        digest.update(np.ascontiguousarray(b).tobytes())
    fingerprint = {"files": 1, "tokens": len(tokens), "sha256": digest.hexdigest()}
    return Corpus(path.name, vocab_size, np.concatenate(train), np.concatenate(val), fingerprint, bytes_per_token=0.0)


@functools.lru_cache(maxsize=4)
def load_corpus(spec: str = "stdlib", vocab_size: int | None = None, val_fraction: float = 0.05) -> Corpus:
    """Read a corpus once per process: 'stdlib', a directory, a glob, or a .bin/.npy token file."""
    if spec == "stdlib":
        root, files = _stdlib_files()
        return _from_documents("stdlib", root, files, val_fraction)
    path = Path(spec).expanduser()
    if path.suffix in (".bin", ".npy") and path.is_file():
        return _from_tokens(path, vocab_size, val_fraction)
    root, files = _text_files(spec)
    return _from_documents(spec, root, files, val_fraction)
