import numpy as np
import pytest
import torch

from workers.data.corpus import CorpusError, load_corpus


def test_stdlib_corpus_is_deterministic_and_split_by_document():
    c = load_corpus("stdlib")
    assert c.vocab_size == 256 and c.bytes_per_token == 1.0
    fp = c.fingerprint
    assert fp["files"] > 300 and fp["bytes"] > 5_000_000 and len(fp["sha256"]) == 64
    # about 5% of documents held out; nothing from tests or site-packages
    assert 0.01 < len(c.val) / (len(c.train) + len(c.val)) < 0.2
    load_corpus.cache_clear()
    again = load_corpus("stdlib")
    assert again.fingerprint == fp and np.array_equal(again.val[:1000], c.val[:1000])
    x, y = c.batch(4, 64, torch.Generator().manual_seed(0))
    x2, _ = c.batch(4, 64, torch.Generator().manual_seed(0))
    assert x.shape == (4, 64) and torch.equal(x, x2) and torch.equal(x[:, 1:], y[:, :-1])


def _write_docs(root, n=60):
    for i in range(n):
        (root / f"doc{i:03d}.txt").write_text(f"document {i} " * 50)


def test_directory_and_glob_corpora(tmp_path):
    _write_docs(tmp_path)
    c = load_corpus(str(tmp_path), val_fraction=0.2)
    assert c.fingerprint["files"] == 60 and c.fingerprint["bytes"] == sum(
        len(p.read_bytes()) for p in tmp_path.iterdir()
    )
    # a document lands whole on one side
    val_text = bytes(c.val).decode()
    train_text = bytes(c.train).decode()
    for i in range(60):
        assert (f"document {i} " in val_text) != (f"document {i} " in train_text)
    g = load_corpus(str(tmp_path / "doc0*.txt"), val_fraction=0.2)
    assert g.fingerprint["files"] == 60
    # adding a file does not move the others between train and validation
    (tmp_path / "doc999.txt").write_text("new " * 40)
    bigger = load_corpus(str(tmp_path), val_fraction=0.2)
    assert bytes(c.val).decode() in bytes(bigger.val).decode() or "new" in bytes(bigger.val).decode()


def test_token_files(tmp_path):
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 1000, size=65_536 * 30, dtype=np.uint16)
    toks.tofile(tmp_path / "t.bin")
    c = load_corpus(str(tmp_path / "t.bin"), vocab_size=1000, val_fraction=0.25)
    assert c.vocab_size == 1000 and c.fingerprint["tokens"] == len(toks) and c.bytes_per_token == 0.0
    assert len(c.train) + len(c.val) == len(toks)
    np.save(tmp_path / "t.npy", toks.astype(np.uint16))
    assert load_corpus(str(tmp_path / "t.npy"), vocab_size=1000, val_fraction=0.25).fingerprint == c.fingerprint
    with pytest.raises(CorpusError, match="vocabulary size"):
        load_corpus(str(tmp_path / "t.bin"))
    with pytest.raises(CorpusError, match="token id 999, outside its stated vocabulary of 500"):
        load_corpus(str(tmp_path / "t.bin"), vocab_size=500, val_fraction=0.25)


def test_bad_corpus_is_one_sentence(tmp_path):
    with pytest.raises(CorpusError, match="neither a directory"):
        load_corpus(str(tmp_path / "nothing-*.txt"))
    (tmp_path / "one.txt").write_text("x")
    with pytest.raises(CorpusError, match="too few"):
        load_corpus(str(tmp_path))
