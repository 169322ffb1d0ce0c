"""No repeated work: a proposal that repeats an architecture the study trained takes its result instead of
training it again, a resumed study does not replay its sampler from the start, and trials cancelled in
flight do not count against the budget. Real parts: Optuna on SQLite, the runner, the micro proxy trained
in-process (the executor records every job it runs)."""

from __future__ import annotations

import optuna
import pytest
from studyutil import make_spec

from nas import record
from nas.executor import InlineExecutor, Job
from nas.runner import run_study, sampler_seed

pytestmark = pytest.mark.slow


class CountingExecutor(InlineExecutor):
    """InlineExecutor that keeps every job it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[Job] = []

    def submit(self, job: Job) -> int:
        self.jobs.append(job)
        return super().submit(job)


def trials(spec):
    return optuna.load_study(study_name=spec.name, storage=spec.storage_url).get_trials()


def trained_keys(executor: CountingExecutor, spec) -> list[str]:
    from workers.profile import load_profile

    profile = load_profile(spec.profile).model_dump(mode="json")
    return [record.arch_key(j.arch, profile, j.seeds) for j in executor.jobs]


def test_a_repeated_architecture_takes_the_result_of_the_trial_that_trained_it(urls):
    # seed 0 on the four-architecture space proposes trial 1's architecture again as trial 3
    spec = make_spec(urls, name="repeats", budget={"trials": 5}, concurrency=2)
    ex = CountingExecutor()
    summary = run_study(spec, executor=ex, show_progress=False, track=True)
    ts = trials(spec)
    assert summary.counts["complete"] == 5 and all(t.state.name == "COMPLETE" for t in ts)
    keys = trained_keys(ex, spec)
    assert len(keys) == len(set(keys)) < 5  # every job trained an architecture of its own
    copies = [t for t in ts if t.user_attrs.get(record.DUPLICATE_OF) is not None]
    assert copies and len(copies) + len(keys) == 5
    by_number = {t.number: t for t in ts}
    for t in copies:
        twin = by_number[t.user_attrs[record.DUPLICATE_OF]]
        assert t.user_attrs[record.ARCH_KEY] == twin.user_attrs[record.ARCH_KEY]
        assert t.values == twin.values and t.user_attrs["result"] == twin.user_attrs["result"]  # taken, not rerun
        assert t.user_attrs["mlflow_run_id"] != twin.user_attrs["mlflow_run_id"]  # each trial recorded once


def test_a_resumed_study_does_not_replay_its_sampler(urls):
    spec = make_spec(urls, name="replay", budget={"trials": 2}, concurrency=1)
    first = CountingExecutor()
    run_study(spec, executor=first, show_progress=False, track=False)
    resumed = CountingExecutor()
    run_study(make_spec(urls, name="replay", budget={"trials": 5}, concurrency=1), executor=resumed,
              show_progress=False, track=False)
    ts = sorted(trials(spec), key=lambda t: t.number)
    assert [t.state.name for t in ts] == ["COMPLETE"] * 5
    # a sampler seeded as at the start would propose trials 0 and 1 again as 2 and 3
    assert [t.params for t in ts[2:4]] != [t.params for t in ts[:2]]
    assert sampler_seed(0, 0) == 0 and sampler_seed(0, 2) != sampler_seed(0, 3)
    keys = trained_keys(first, spec) + trained_keys(resumed, spec)
    assert len(keys) == len(set(keys))  # nothing trained twice across the two runs


def test_cancelled_trials_do_not_count_against_the_budget(urls):
    spec = make_spec(urls, name="cancelled", budget={"trials": 3}, concurrency=2)
    asked = iter([None, "cancel"])  # the second look at the queue finds a cancel: one trial is in flight
    summary = run_study(spec, executor=CountingExecutor(), show_progress=False, track=False,
                        should_stop=lambda: next(asked, "cancel"))
    assert summary.stop_reason == "cancel"
    assert summary.counts["complete"] == 1 and summary.counts["cancelled"] == 1
    failed = [t for t in trials(spec) if t.state.name == "FAIL"]
    assert [t.user_attrs["failure"] for t in failed] == [{"kind": "cancelled", "reason": "the study was cancelled"}]
    summary = run_study(spec, executor=CountingExecutor(), show_progress=False, track=False)  # resumed
    assert summary.counts["complete"] == 3 and summary.counts["cancelled"] == 1 and summary.counts["failed"] == 0
    assert record.trained(summary.counts) == 3
