"""A profile small enough for unit tests: a few steps of everything, on the CPU."""

MICRO = {
    "name": "micro",
    "params": 5e4,
    "device": "cpu",
    "progress_every": 2,
    "lm": {"seq_len": 32, "batch_size": 4, "tokens": 4 * 4 * 32, "eval_tokens": 256},
    "synthetic": {
        "tokens_per_task": 3 * 8 * 32,
        "batch_size": 8,
        "eval_examples": 16,
        "tasks": [
            {"name": "mqar", "settings": {"vocab_size": 64, "seq_len": 32, "num_kv_pairs": 4}},
            {"name": "in_context_recall", "settings": {"seq_len": 32}},
        ],
    },
    "throughput": {"contexts": [16, 48], "decode_tokens": 2, "repeats": 1},
}
