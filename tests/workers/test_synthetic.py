import re
import time

import pytest
import torch
import torch.nn.functional as F

from search_spaces import ConfigError
from workers.data import IGNORE_INDEX, TASKS, Task, accuracy, make_task

PUBLISHED = {
    "mqar": dict(
        vocab_size=8192, seq_len=64, num_kv_pairs=4, power_a=0.01, random_non_queries=True,
        train_pairs=[], train_weights=[],
    ),
    "in_context_recall": dict(vocab_size=16, seq_len=128),
    "fuzzy_in_context_recall": dict(vocab_size=16, seq_len=128, k_motif_size=3, v_motif_size=3),
    "noisy_in_context_recall": dict(vocab_size=32, seq_len=128, noise_vocab_size=16, frac_noise=0.2),
    "selective_copying": dict(vocab_size=16, seq_len=256, num_tokens_to_copy=16),
    "compression": dict(vocab_size=16, seq_len=32),
    "memorization": dict(vocab_size=256, seq_len=32, kv_seed=12345),
}
HARDER = {
    "mqar": dict(vocab_size=1024, seq_len=256, num_kv_pairs=32, power_a=0.5),
    "in_context_recall": dict(vocab_size=64, seq_len=256),
    "fuzzy_in_context_recall": dict(vocab_size=32, seq_len=256),
    "noisy_in_context_recall": dict(vocab_size=48, seq_len=256, frac_noise=0.6),
    "selective_copying": dict(vocab_size=32, seq_len=512, num_tokens_to_copy=64),
    "compression": dict(vocab_size=64, seq_len=128),
    "memorization": dict(vocab_size=1024, seq_len=64, kv_seed=7),
}
CASES = [pytest.param(n, {}, id=n) for n in PUBLISHED] + [
    pytest.param(n, s, id=f"{n}-harder") for n, s in HARDER.items()
]
FULL_LM_TARGETS = {"in_context_recall", "fuzzy_in_context_recall", "noisy_in_context_recall"}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def answers(task: Task) -> range:
    """The token ids a scored target can take."""
    c = task.config
    if task.name in ("mqar", "in_context_recall"):
        return range(c.vocab_size // 2, c.vocab_size)
    if task.name == "noisy_in_context_recall":
        plain = c.vocab_size - c.noise_vocab_size
        return range(plain // 2, plain)
    if task.name in ("fuzzy_in_context_recall", "memorization"):
        return range((c.vocab_size - 1) // 2, c.vocab_size - 1)
    if task.name == "selective_copying":
        return range(c.vocab_size - 2)
    return range(c.vocab_size - 1)  # compression


# ---- oracles: predictions read off the inputs by the task's definition; -100 where none is due


def oracle_mqar(task: Task, x: torch.Tensor) -> torch.Tensor:
    ctx = 2 * task.config.num_kv_pairs
    pred = torch.full_like(x, IGNORE_INDEX)
    for b, row in enumerate(x.tolist()):
        value_of = dict(zip(row[0:ctx:2], row[1:ctx:2], strict=True))
        for t in range(ctx, len(row), 2):
            if row[t] in value_of:
                pred[b, t] = value_of[row[t]]
    return pred


def oracle_recall(task: Task, x: torch.Tensor) -> torch.Tensor:
    c = task.config
    plain = c.vocab_size - getattr(c, "noise_vocab_size", 0)
    pred = torch.full_like(x, IGNORE_INDEX)
    for b, row in enumerate(x.tolist()):
        value_of = {}
        for t in range(0, len(row), 2):
            key = row[t]
            if key >= plain // 2:  # a noise pair
                assert key >= plain and (t + 1 == len(row) or row[t + 1] >= plain)
                continue
            if key in value_of:
                pred[b, t] = value_of[key]
            if t + 1 < len(row):
                assert value_of.setdefault(key, row[t + 1]) == row[t + 1], "a key changed its value"
    return pred


def parse_fuzzy(task: Task, row: list[int]) -> list[tuple[int, list[int], list[int]]]:
    """(start, key, value) of each pair; key and value tokens come from disjoint ranges."""
    pad = task.vocab_size - 1
    n_keys = pad // 2
    t = 0
    while row[t] == pad:
        t += 1
    pairs = []
    while t < len(row):
        start = t
        while t < len(row) and row[t] < n_keys:
            t += 1
        key_end = t
        while t < len(row) and n_keys <= row[t] < pad:
            t += 1
        pairs.append((start, row[start:key_end], row[key_end:t]))
    return pairs


def oracle_fuzzy(task: Task, x: torch.Tensor) -> torch.Tensor:
    km = task.config.k_motif_size
    pred = torch.full_like(x, IGNORE_INDEX)
    for b, row in enumerate(x.tolist()):
        value_of = {}
        pairs = parse_fuzzy(task, row)
        for i, (start, key, value) in enumerate(pairs):
            assert len(key) == km  # evaluation keys are all of the longest motif
            known = value_of.get(tuple(key))
            if known is not None:
                for j, v in enumerate(known):
                    if start + km - 1 + j < len(row):  # the last value is cut by the shift
                        pred[b, start + km - 1 + j] = v
                if i < len(pairs) - 1:
                    assert known == value
            else:
                value_of[tuple(key)] = value
    return pred


def oracle_selective_copying(task: Task, x: torch.Tensor) -> torch.Tensor:
    blank, copy = task.vocab_size - 2, task.vocab_size - 1
    pred = torch.full_like(x, IGNORE_INDEX)
    for b, row in enumerate(x.tolist()):
        at = row.index(copy)
        content = [tok for tok in row[:at] if tok != blank]
        assert row[at - 1] != blank  # blanks go in front of tokens, never after the last
        pred[b, at + 1 : at + 1 + len(content)] = torch.tensor(content)
    return pred


def oracle_compression(task: Task, x: torch.Tensor) -> torch.Tensor:
    n = task.config.seq_len - 1
    assert (x[:, n:] == task.vocab_size - 1).all() and (x[:, :n] < task.vocab_size - 1).all()
    pred = torch.full_like(x, IGNORE_INDEX)
    pred[:, n:] = x[:, :n]
    return pred


def learn_memorization(task: Task, stream_batches) -> dict[int, int]:
    value_of = {}
    for x, y in stream_batches:
        for key, value in zip(x[:, 0::2].flatten().tolist(), y[:, 1::2].flatten().tolist(), strict=True):
            assert value_of.setdefault(key, value) == value, "the key→value map changed between batches"
    return value_of


def oracle_memorization(value_of: dict[int, int], x: torch.Tensor) -> torch.Tensor:
    pred = torch.full_like(x, IGNORE_INDEX)
    pred[:, 1::2] = torch.tensor([[value_of[k] for k in row] for row in x[:, 0::2].tolist()])
    return pred


def oracle(task: Task, x: torch.Tensor) -> torch.Tensor:
    if task.name == "memorization":
        train, _ = task.split(seed=3)
        return oracle_memorization(learn_memorization(task, (train.batch(64) for _ in range(4))), x)
    return {
        "mqar": oracle_mqar,
        "in_context_recall": oracle_recall,
        "noisy_in_context_recall": oracle_recall,
        "fuzzy_in_context_recall": oracle_fuzzy,
        "selective_copying": oracle_selective_copying,
        "compression": oracle_compression,
    }[task.name](task, x)


# ---- tests


def test_defaults_are_the_published_settings():
    assert set(TASKS) == set(PUBLISHED)
    for name, settings in PUBLISHED.items():
        assert make_task(name).settings() == settings


@pytest.mark.parametrize(("name", "settings"), CASES)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_batches_have_the_shape_and_vocabulary_of_the_task(name, settings, train):
    task = make_task(name, **settings)
    x, y = task.batch(16, gen(0), train=train)
    assert x.shape == y.shape == (16, task.seq_len)
    assert x.dtype == y.dtype == torch.int64
    assert x.min() >= 0 and x.max() < task.vocab_size
    scored = y != IGNORE_INDEX
    assert (y[scored] >= 0).all() and (y[scored] < task.vocab_size).all()
    assert scored.any(dim=1).all(), "every sequence has something to score"


@pytest.mark.parametrize(("name", "settings"), CASES)
def test_batches_are_deterministic_given_the_generator(name, settings):
    task = make_task(name, **settings)
    g = gen(11)
    first, second = task.batch(8, g), task.batch(8, g)
    again = task.batch(8, gen(11))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], second[0])
    assert not torch.equal(first[0], task.batch(8, gen(12))[0])


@pytest.mark.parametrize("name", PUBLISHED)
def test_train_and_eval_streams_are_deterministic_and_differ(name):
    task = make_task(name)
    train, evaluation = task.split(seed=5)
    train2, evaluation2 = task.split(seed=5)
    tx, _ = train.batch(8)
    ex, ey = evaluation.batch(8)
    assert torch.equal(tx, train2.batch(8)[0]) and torch.equal(ex, evaluation2.batch(8)[0])
    assert not torch.equal(tx, ex)
    assert not torch.equal(tx, task.split(seed=6)[0].batch(8)[0])
    assert Task.eval_seed(5) != 5
    assert train.train and not evaluation.train
    # the evaluation stream is a plain batch() from the evaluation seed
    assert torch.equal(ey, task.batch(8, gen(Task.eval_seed(5)))[1])


@pytest.mark.parametrize(("name", "settings"), CASES)
def test_an_oracle_scores_exactly_the_intended_positions_perfectly(name, settings):
    task = make_task(name, **settings)
    x, y = task.batch(32, gen(1))
    pred = oracle(task, x)
    scored = y != IGNORE_INDEX
    if name == "mqar":
        # a random filler token can equal a key: the oracle answers there too, unscored
        assert (pred[scored] != IGNORE_INDEX).all()
    else:
        assert torch.equal(pred != IGNORE_INDEX, scored)
    logits = F.one_hot(pred.clamp(min=0), task.vocab_size).float()
    assert accuracy(logits, y) == 1.0


@pytest.mark.parametrize(("name", "settings"), CASES)
def test_a_constant_predictor_scores_about_chance(name, settings):
    task = make_task(name, **settings)
    x, y = task.batch(256, gen(2))
    allowed = answers(task)
    assert all(t in allowed for t in y[y != IGNORE_INDEX].unique().tolist())
    best = 0.0
    for token in (allowed[0], allowed[len(allowed) // 2], allowed[-1]):
        logits = F.one_hot(torch.tensor(token), task.vocab_size).float().expand(*x.shape, -1)
        best = max(best, accuracy(logits, y))
    chance = 1 / len(allowed)
    assert best < 1.6 * chance + 0.02
    # the most frequent answer over the whole batch is not much above chance either
    scored = y[y != IGNORE_INDEX]
    assert scored.bincount().max().item() / scored.numel() < 1.6 * chance + 0.02


def test_mqar_pairs_and_queries():
    task = make_task("mqar", vocab_size=512, seq_len=128, num_kv_pairs=16)
    x, y = task.batch(64, gen(3))
    N, half = 16, 256
    keys, values = x[:, 0 : 2 * N : 2], x[:, 1 : 2 * N : 2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < 512)).all()
    assert all(len(set(r)) == N for r in keys.tolist()) and all(len(set(r)) == N for r in values.tolist())
    for b in range(64):
        pos = (y[b] != IGNORE_INDEX).nonzero().flatten()
        assert len(pos) == N and ((pos >= 2 * N) & ((pos - 2 * N) % 2 == 0)).all()
        # every key is asked once, and answered with its own value
        assert sorted(x[b, pos].tolist()) == sorted(keys[b].tolist())
        value_of = dict(zip(keys[b].tolist(), values[b].tolist(), strict=True))
        assert [value_of[k] for k in x[b, pos].tolist()] == y[b, pos].tolist()


def test_mqar_filler_is_random_or_zero():
    """Zoology's published experiments fill the non-query positions with 0 (never a key); its default is random."""
    settings = dict(vocab_size=512, seq_len=128, num_kv_pairs=16)
    x, y = make_task("mqar", **settings, random_non_queries=False).batch(64, gen(3))
    filler = torch.ones_like(x, dtype=torch.bool)
    filler[:, : 2 * 16] = False
    filler &= y == IGNORE_INDEX
    assert (x[filler] == 0).all() and ((x[y != IGNORE_INDEX] >= 1) & (x[y != IGNORE_INDEX] < 256)).all()
    x_random, y_random = make_task("mqar", **settings).batch(64, gen(3))
    assert (x_random[filler] != 0).float().mean() > 0.9
    assert torch.equal(y, y_random)  # the same pairs and queries from the same stream, only the filler differs


def test_mqar_trains_on_a_mixture_of_pair_counts_and_is_scored_on_its_own():
    """Zoology's reproduction trains on several pair counts at once; the held-out stream keeps num_kv_pairs."""
    task = make_task("mqar", vocab_size=512, seq_len=128, num_kv_pairs=16, train_pairs=[4, 16, 32],
                     train_weights=[6, 1, 1])
    train, held_out = task.split(0)
    x, y = train.batch(4096)
    scored = (y != IGNORE_INDEX).sum(1)
    counts = {n: (scored == n).sum().item() for n in (4, 16, 32)}
    assert sum(counts.values()) == 4096  # every row has one of the listed counts
    assert counts[4] / 4096 == pytest.approx(6 / 8, abs=0.03)
    assert counts[16] / 4096 == pytest.approx(1 / 8, abs=0.03) and counts[32] / 4096 == pytest.approx(1 / 8, abs=0.03)
    for b in (scored == 4).nonzero().flatten()[:20].tolist():  # a row of 4 pairs is MQAR of 4 pairs
        pos = (y[b] != IGNORE_INDEX).nonzero().flatten()
        value_of = dict(zip(x[b, 0:8:2].tolist(), x[b, 1:8:2].tolist(), strict=True))
        assert [value_of[k] for k in x[b, pos].tolist()] == y[b, pos].tolist()
    _, y_eval = held_out.batch(64)
    assert ((y_eval != IGNORE_INDEX).sum(1) == 16).all()
    # equal shares where the weights are left out; the stream is deterministic
    even = make_task("mqar", vocab_size=512, seq_len=128, num_kv_pairs=16, train_pairs=[4, 8])
    a, b = even.split(3)[0].batch(2048), even.split(3)[0].batch(2048)
    assert torch.equal(a[0], b[0])
    assert ((a[1] != IGNORE_INDEX).sum(1) == 4).float().mean() == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    "settings, words",
    [
        (dict(train_pairs=[4, 40]), "train_pairs [40] do not fit seq_len=128; each must lie in 1..32"),
        (dict(train_pairs=[4, 8], train_weights=[1]), "train_weights has 1 entries for 2 train_pairs"),
        (dict(train_pairs=[4, 8], train_weights=[0, 0]), "non-negative with a positive sum"),
    ],
)
def test_mqar_refuses_a_mixture_it_cannot_draw(settings, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        make_task("mqar", vocab_size=512, seq_len=128, **settings)


def test_mqar_power_law_puts_queries_close_to_the_pairs():
    def mean_gap(power_a):
        _, y = make_task("mqar", seq_len=256, power_a=power_a).batch(256, gen(4))
        return ((y != IGNORE_INDEX).nonzero()[:, 1].float() - 8).mean().item() / 2

    assert mean_gap(0.01) < 0.5 * mean_gap(1.0)
    assert mean_gap(1.0) == pytest.approx((124 - 1) / 2, rel=0.1)  # uniform over the 124 slots


def test_selective_copying_targets_are_the_tokens_in_order():
    task = make_task("selective_copying")
    x, y = task.batch(32, gen(5))
    blank, copy = 14, 15
    assert (x[:, 239] == copy).all() and (x[:, 240:] == blank).all()
    for b in range(32):
        content = x[b, :239][x[b, :239] != blank]
        assert torch.equal(y[b, 240:], content)
        assert (y[b, :240] == IGNORE_INDEX).all()


def test_memorization_map_is_fixed_by_the_task_and_shared_by_every_stream():
    task = make_task("memorization")
    train, evaluation = task.split(seed=0)
    other_train, _ = task.split(seed=9)
    seen = learn_memorization(task, [train.batch(64), evaluation.batch(64), other_train.batch(64)])
    assert len(seen) > 100 and len(set(seen.values())) == len(seen)  # an injection
    assert all(k < 127 and 127 <= v < 255 for k, v in seen.items())
    assert (task.batch(8, gen(0))[0][:, 1::2] == 255).all()  # the insert token
    moved = learn_memorization(task, [make_task("memorization", kv_seed=1).batch(64, gen(0))])
    assert any(seen.get(k, v) != v for k, v in moved.items())


@pytest.mark.parametrize("name", sorted(FULL_LM_TARGETS))
def test_mad_recall_tasks_train_on_every_next_token(name):
    task = make_task(name)
    x, y = task.batch(16, gen(6), train=True)
    assert torch.equal(y[:, :-1], x[:, 1:]) and (y >= 0).all()


@pytest.mark.parametrize("name", sorted(set(PUBLISHED) - FULL_LM_TARGETS))
def test_other_tasks_train_on_their_scored_positions(name):
    task = make_task(name)
    trained, scored = task.batch(8, gen(7), train=True), task.batch(8, gen(7))
    assert all(torch.equal(a, b) for a, b in zip(trained, scored, strict=True))


def test_fuzzy_recall_keys_vary_in_length_in_training_only():
    task = make_task("fuzzy_in_context_recall")

    def key_lengths(train):
        x, _ = task.batch(32, gen(8), train=train)
        return {len(key) for row in x.tolist() for _, key, _ in parse_fuzzy(task, row)}

    assert key_lengths(train=False) == {3}
    assert key_lengths(train=True) == {1, 2, 3}


def test_noise_is_in_its_own_vocabulary_and_never_scored():
    task = make_task("noisy_in_context_recall", frac_noise=0.5)
    x, y = task.batch(64, gen(9))
    noise = x >= 16
    assert 0.4 < noise[:, :-2].float().mean() < 0.6
    assert (y[noise] == IGNORE_INDEX).all()


@pytest.mark.parametrize(
    ("name", "settings", "words"),
    [
        ("mqa", {}, ["unknown synthetic task 'mqa'", "mqar", "memorization"]),
        ("mqar", {"num_pairs": 4}, ["unknown key 'num_pairs'", "num_kv_pairs"]),
        ("mqar", {"num_kv_pairs": 17}, ["num_kv_pairs=17", "at most 16"]),
        ("mqar", {"vocab_size": 64}, ["vocab_size", "greater than seq_len"]),
        ("mqar", {"power_a": 0}, ["power_a", "greater than 0"]),
        ("in_context_recall", {"seq_len": 127}, ["seq_len", "even"]),
        ("noisy_in_context_recall", {"frac_noise": 1.0}, ["frac_noise", "less than 1"]),
        ("noisy_in_context_recall", {"noise_vocab_size": 31}, ["noise_vocab_size=31", "at most 30"]),
        ("fuzzy_in_context_recall", {"k_motif_size": 8}, ["k_motif_size=8", "at most 7"]),
        ("selective_copying", {"num_tokens_to_copy": 128}, ["num_tokens_to_copy=128", "at most 127"]),
        ("compression", {"vocab_size": 2}, ["vocab_size", "greater than or equal to 3"]),
    ],
)
def test_bad_names_and_settings_say_what_is_wrong(name, settings, words):
    with pytest.raises(ValueError) as err:
        make_task(name, **settings)
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "\n" not in message


def test_settings_are_frozen_and_bad_calls_are_refused():
    task = make_task("mqar")
    with pytest.raises(ValueError):
        task.config.num_kv_pairs = 8
    with pytest.raises(ValueError, match="batch_size"):
        task.batch(0, gen(0))
    with pytest.raises(ValueError, match="no scored positions"):
        accuracy(torch.zeros(1, 4, 8), torch.full((1, 4), IGNORE_INDEX))


@pytest.mark.alone
@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("mqar", dict(seq_len=256, num_kv_pairs=64)),
        ("in_context_recall", dict(seq_len=256)),
        ("fuzzy_in_context_recall", dict(seq_len=256)),
        ("noisy_in_context_recall", dict(seq_len=256)),
        ("selective_copying", {}),
        ("compression", dict(seq_len=129)),
        ("memorization", dict(seq_len=256)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_batch_of_64_by_256_takes_under_20_ms(name, settings):
    task = make_task(name, **settings)
    g = gen(0)
    times = []
    # one thread: the ops are small, and intra-op threads that share a core with another process stall
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(5):
            t0 = time.perf_counter()
            task.batch(64, g)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    assert min(times) < 0.020
