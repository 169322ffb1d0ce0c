"""MO-ASHA's promotion rule on stored trials (no study, no training)."""

from types import SimpleNamespace

from nas import record
from nas.asha import promotion

MAX = ["maximize", "maximize"]


def paused(number: int, values: list[float]) -> SimpleNamespace:
    """A trial that finished rung 0 with `values` and waits there."""
    attrs = {record.RUNG_RESULTS: {"0": values}, record.RUNG_DONE: 0}
    return SimpleNamespace(number=number, state=SimpleNamespace(name="RUNNING"), user_attrs=attrs)


# six trials at rung 0; the front is 0, 1 and 3 (0 and 3 its ends), the others are dominated by 0
TRIALS = [paused(0, [0.9, 9]), paused(1, [0.1, 10]), paused(2, [0.5, 5]), paused(3, [0.05, 12]),
          paused(4, [0.2, 2]), paused(5, [0.1, 1])]


def promoted(trials, eta: int = 3) -> list[int]:
    """Every trial number promotion() hands out, in order, as if each started at once."""
    out, running = [], set()
    while (p := promotion(trials, 2, eta, MAX, running)) is not None:
        assert p[1] == 1
        out.append(p[0].number)
        running.add(p[0].number)
    return out


def test_the_top_n_over_eta_are_promoted_by_rank_then_crowding():
    assert promoted(TRIALS) == [0, 3]  # 6 // 3 = 2 of the front {0, 1, 3}: its ends, crowding infinite
    assert promoted(TRIALS, eta=2) == [0, 3, 1]  # 3: the whole front
    assert promoted(TRIALS[1:], eta=2) == [2, 3]  # without 0, trial 2 joins the front, whose ends go first


def test_nothing_is_promoted_before_a_rung_has_eta_trials():
    assert promoted(TRIALS[:2]) == []


def test_a_trial_running_or_promoted_already_is_not_handed_out_again():
    done = paused(0, [0.9, 9])
    done.user_attrs[record.RUNG_RESULTS]["1"], done.user_attrs[record.RUNG_DONE] = [0.9, 9], 1
    assert promoted([done, *TRIALS[1:]]) == [3]  # 0 went on already; 6 // 3 = 2 is {0, 3}
    assert promotion(TRIALS, 2, 3, MAX, {0, 3}) is None
