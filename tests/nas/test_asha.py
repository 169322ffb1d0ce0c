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


def test_synchronous_promotion_waits_until_no_trial_to_come_can_push_a_trial_out():
    # 6 at rung 0 and 3 to come: 9 // 3 = 3 go up in the end, and each of the front's places could still
    # be taken by a newcomer: nothing goes up yet
    assert promotion(TRIALS, 2, 3, MAX, set(), to_come=3) is None
    # 1 to come: 7 // 3 = 2 go up in the end; only the first place is sure of it
    assert promotion(TRIALS, 2, 3, MAX, set(), to_come=1)[0].number == 0
    assert promotion(TRIALS, 2, 3, MAX, {0}, to_come=1) is None
    # nothing to come: the asynchronous rule over the whole rung
    out, running = [], set()
    while (p := promotion(TRIALS, 2, 3, MAX, running, to_come=0)) is not None:
        out.append(p[0].number)
        running.add(p[0].number)
    assert out == promoted(TRIALS)


def test_synchronous_promotion_bounds_each_higher_rung_by_the_one_below():
    # rungs 0, 1, 2 with eta 2: 6 at rung 0 (none to come) send at most 3 to rung 1, which holds 2 so far;
    # 3 // 2 = 1 goes to the top, and with one more to come at rung 1 no place there is sure yet
    up = [paused(n, v) for n, v in [(0, [0.9, 9]), (1, [0.1, 10])]]
    for t in up:
        results = t.user_attrs[record.RUNG_RESULTS]
        results["1"], t.user_attrs[record.RUNG_DONE] = results["0"], 1
    trials = up + TRIALS[2:]
    assert promotion(trials, 3, 2, MAX, {0, 1}, to_come=0)[0].number == 3  # rung 0's third place goes up
    assert promotion(trials, 3, 2, MAX, {3}, to_come=0) is None  # rung 1: 2 of at most 3, 3 // 2 - 1 = 0
    assert promotion(trials, 3, 2, MAX, {3})[0].number in (0, 1)  # asynchronously: 2 // 2 = 1 goes up now


def test_a_repeated_architecture_holds_no_place_of_its_own():
    # trial 6 repeats trial 0 and took its results: the rung still holds six trials, and its top two are
    # 0 and 3, not 0 and its copy
    copy = paused(6, [0.9, 9])
    copy.user_attrs[record.DUPLICATE_OF] = 0
    assert promoted([*TRIALS, copy]) == [0, 3]
    assert promoted([*TRIALS[1:], copy]) == promoted(TRIALS[1:]) == [2]  # five places: 5 // 3 = 1
