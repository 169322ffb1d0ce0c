"""`nas fidelity --report --without TASK`: the recall mean over the other tasks, at both sizes."""

from types import SimpleNamespace

import pandas as pd
import pytest

from search_spaces.config import ConfigError


def test_the_recall_mean_without_a_task_is_the_mean_of_the_others(monkeypatch):
    import nas.reader
    from nas.fidelity import fidelity_report

    # four source trials; task b is noise that reverses the order of the mean at the larger size
    small = pd.DataFrame({"number": [0, 1, 2, 3], "pattern": ["a", "b", "c", "d"],
                          "synthetic_accuracy": [0.2, 0.4, 0.6, 0.8],
                          "m.acc.a": [0.1, 0.3, 0.5, 0.7], "m.acc.b": [0.3, 0.5, 0.7, 0.9]})
    big = pd.DataFrame({"number": [10, 11, 12, 13], "status": ["complete"] * 4, "p.source": [0, 1, 2, 3],
                        "synthetic_accuracy": [0.5, 0.5, 0.5, 0.5],
                        "m.acc.a": [0.2, 0.4, 0.6, 0.8], "m.acc.b": [0.8, 0.6, 0.4, 0.2]})
    metas = {"big": SimpleNamespace(kind="fidelity", spec={"fidelity": {"source": "small"}},
                                    metrics=["synthetic_accuracy"]),
             "small": SimpleNamespace(kind="search", spec={}, metrics=["synthetic_accuracy"])}
    monkeypatch.setattr(nas.reader, "study_frame", lambda url, name: (metas[name], big if name == "big" else small))

    rows = fidelity_report("sqlite://", "big", without=["b"])
    assert [r.metric for r in rows] == ["synthetic_accuracy", "synthetic_accuracy without b"]
    mean = rows[1]
    assert mean.source == pytest.approx([0.1, 0.3, 0.5, 0.7]) and mean.larger == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert mean.rho == pytest.approx(1.0) and mean.trials == [0, 1, 2, 3] and mean.source_sd is None
    both = fidelity_report("sqlite://", "big", ["synthetic_accuracy"], without=["a"])[1]
    assert both.metric == "synthetic_accuracy without a" and both.rho == pytest.approx(-1.0)
    with pytest.raises(ConfigError, match="--without c: the two studies record no such task; choose from a, b"):
        fidelity_report("sqlite://", "big", without=["c"])
    with pytest.raises(ConfigError, match="--without names every task"):
        fidelity_report("sqlite://", "big", without=["a", "b"])
