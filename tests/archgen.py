"""Random valid ArchConfigs for property tests (every family, every option that changes the shapes)."""

from __future__ import annotations

import random

from search_spaces import ArchConfig


def random_arch(rng: random.Random, *, max_len: int = 8, d_choices=(32, 48, 64, 96)) -> ArchConfig:
    d = rng.choice(d_choices)
    n = rng.randint(1, max_len)
    pattern = "".join(rng.choice("*MmXDCW-E") for _ in range(n))
    cfg: dict = {
        "pattern": pattern,
        "d_model": d,
        "vocab_size": rng.choice([64, 256, 97]),
        "tie_embeddings": rng.random() < 0.5,
    }
    for symbol, family in (("*", "attention"), ("W", "local_attention")):
        if symbol not in pattern:
            continue
        heads = rng.choice([h for h in (1, 2, 4, 8) if d % h == 0])
        cfg[family] = {
            "heads": heads,
            "kv_heads": rng.choice([k for k in (1, 2, 4, 8) if heads % k == 0]),
            "pos": rng.choice(["rope", "nope"]),
            "rope_fraction": rng.choice([1.0, 0.5]),
            "output_gate": rng.random() < 0.5,
            "qk_norm": rng.random() < 0.5,
        }
        if rng.random() < 0.3:
            cfg[family]["head_dim"] = rng.choice([8, 16])
        if symbol == "W" or rng.random() < 0.3:
            cfg[family]["window"] = rng.choice([4, 16, 1024])
    if "D" in pattern:
        heads = rng.choice([h for h in (1, 2, 4) if d % h == 0])
        cfg["deltanet"] = {
            "heads": heads,
            "v_heads": heads * rng.choice([1, 2]),
            "gate": rng.choice(["head", "channel"]),
            "d_conv": rng.choice([2, 4]),
        }
        if rng.random() < 0.5:
            cfg["deltanet"].update(head_dim=rng.choice([8, 16]), v_head_dim=rng.choice([8, 12, 24]))
    if "C" in pattern:
        cfg["shortconv"] = {"d_conv": rng.choice([2, 3, 4])}
    if "M" in pattern:
        expand = rng.choice([1, 2])
        head_dim = rng.choice([h for h in (8, 16, 32) if (expand * d) % h == 0])
        nheads = expand * d // head_dim
        cfg["mamba2"] = {
            "d_state": rng.choice([4, 8, 16]),
            "head_dim": head_dim,
            "expand": expand,
            "n_groups": rng.choice([g for g in (1, 2, 4) if nheads % g == 0]),
            "d_conv": rng.choice([2, 4]),
            "chunk_size": rng.choice([8, 16, 64]),
            "norm": rng.choice(["group", "head", "none"]),
        }
    if "m" in pattern:
        cfg["mamba1"] = {
            "d_state": rng.choice([4, 8, 16]),
            "expand": rng.choice([1, 2]),
            "d_conv": rng.choice([2, 3, 4]),
            "dt_rank": rng.choice([None, 3, 8]),
        }
    if "X" in pattern:
        cfg["mlstm"] = {"heads": rng.choice([1, 2, 4]), "qk_dim_factor": 0.5, "v_dim_factor": rng.choice([0.5, 1.0])}
    if "-" in pattern:
        cfg["mlp"] = {"ratio": rng.choice([1.0, 2.5, 4.0]), "activation": rng.choice(["swiglu", "relu2", "gelu"])}
    if "E" in pattern:
        experts = rng.choice([1, 2, 4])
        cfg["moe"] = {
            "experts": experts,
            "top_k": rng.randint(1, experts),
            "ratio": rng.choice([0.5, 1.0, 2.0]),
            "shared_expert": rng.random() < 0.5,
            "activation": rng.choice(["swiglu", "relu2"]),
        }
    return ArchConfig.from_dict(cfg)
