"""Small studies for every test folder: the micro profile, an inline space of four tiny architectures, and
the two-encoding ablation of a preset."""

import copy

from profiles import MICRO

from nas.spec import StudySpec, validate

SPACE = {
    "name": "tiny",
    "base": {"d_model": 32, "attention": {"heads": 2}, "mamba2": {"d_state": 8, "head_dim": 16, "chunk_size": 16},
             "mlstm": {"heads": 1}},
    "dimensions": {"layers": 2, "attn_ratio": ["0", "1:1", "all"], "ssm": ["mamba2", "mlstm"]},
}


def micro_profile(**lm):
    p = copy.deepcopy(MICRO)
    p["synthetic"]["tasks"] = p["synthetic"]["tasks"][:1]
    p["lm"].update(lm)
    return p


def ablation_fields() -> dict:
    """The spec fields of a small ablation: the 8B Mamba-2-Hybrid at proxy size, RoPE against NoPE, 2 seeds."""
    return {
        "kind": "ablation",
        "space": None,
        "objectives": [{"metric": "lm_loss"}],
        "ablation": {"base": "mamba2-hybrid-8b", "factors": {"pos": ["nope", "rope"]}, "seeds": 2},
        "profile": {**micro_profile(), "params": 1e5},
    }


def make_spec(urls, **kw) -> StudySpec:
    data = {
        "name": "t",
        "space": SPACE,
        "objectives": [{"metric": "synthetic_accuracy"}, {"metric": "decode_tps"}],
        "budget": {"trials": 4},
        "profile": micro_profile(),
        "concurrency": 2,
        "sampler": "random",
        **urls,
    }
    data.update(kw)
    return validate(StudySpec.model_validate(data))


def add_finished(spec: StudySpec, rows: list[dict]) -> None:
    """Finished trials written straight through Optuna, as the runner records them, without training:
    each row has `params` (categorical search dimensions), `pattern` and `metrics`, and may have `attrs`
    (more user attributes); `failed: True` makes it a failed trial. Creates the study (with its spec) if needed."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from nas import store

    study = store.open_study(spec).study
    dims = spec.search_space().dimensions
    trials = []
    for r in rows:
        ok = not r.get("failed")
        trials.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
            params=r["params"],
            distributions={p: CategoricalDistribution(dims[p]) for p in r["params"]},
            values=[r["metrics"][m] for m in spec.metrics] if ok else None,
            user_attrs={"pattern": r["pattern"], **({"metrics": r["metrics"]} if ok else {}), **r.get("attrs", {})},
        ))
    study.add_trials(trials)
