"""Settings and the store's connections: URLs masked wherever they are shown, the database timeouts read from
the environment or the config file, and the retry of a read or write through a lost connection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from nas import store
from nas.settings import mask_url, settings
from search_spaces.config import ConfigError


@pytest.mark.parametrize("url,shown", [
    ("postgresql+psycopg://nas:s3cr@t:x@db:5432/nas", "postgresql+psycopg://nas:***@db:5432/nas"),
    ("postgresql://u:p%40w@h/db", "postgresql://u:***@h/db"),
    ("http://admin:pw@mlflow:5000/", "http://admin:***@mlflow:5000/"),
    ("postgresql://h/db?sslmode=require&password=pw", "postgresql://h/db?sslmode=require&password=***"),
    ("postgresql+psycopg://nas@db/nas", "postgresql+psycopg://nas@db/nas"),
    ("sqlite:////tmp/x@y/studies.db", "sqlite:////tmp/x@y/studies.db"),
    ("ray-head:6380", "ray-head:6380"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_database_timeouts_come_from_the_environment_or_the_file(monkeypatch, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("db_connect_timeout = 3\ndb_retry = 45.5\n")
    monkeypatch.setenv("NAS_CONFIG", str(config))
    for var in ("NAS_DB_CONNECT_TIMEOUT", "NAS_DB_STATEMENT_TIMEOUT", "NAS_DB_RETRY"):
        monkeypatch.delenv(var, raising=False)
    s = settings()
    assert (s.db_connect_timeout, s.db_statement_timeout, s.db_retry) == (3.0, 60.0, 45.5)
    monkeypatch.setenv("NAS_DB_CONNECT_TIMEOUT", "2")
    assert settings().db_connect_timeout == 2.0
    args = store._connect_args("postgresql+psycopg://nas@db/nas")
    assert args["connect_timeout"] == 2 and args["options"] == "-c statement_timeout=60000"
    monkeypatch.setenv("NAS_DB_RETRY", "soon")
    with pytest.raises(ConfigError, match="NAS_DB_RETRY must be a number of seconds above 0"):
        settings()


def test_transient_errors_are_retried_and_others_are_not(monkeypatch):
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    lost = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("wrapped") from lost  # as Optuna wraps it (StorageInternalError)
        return "ok"

    assert store.retry(flaky, "test", seconds=60) == "ok" and len(calls) == 3
    bad = sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    with pytest.raises(sa.exc.IntegrityError):
        store.retry(lambda: (_ for _ in ()).throw(bad), "test", seconds=60)
    with pytest.raises(sa.exc.OperationalError):  # past its time it gives up with the error itself
        store.retry(lambda: (_ for _ in ()).throw(lost), "test", seconds=0.1)


def test_a_lost_connection_during_a_storage_call_is_retried(tmp_path, monkeypatch):
    """The Optuna storage retries each call: a study's trials survive a database that goes away."""
    import optuna

    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    s = store.storage(url)
    study = optuna.create_study(study_name="flaky", storage=s)
    real = optuna.storages.RDBStorage.set_trial_user_attr
    failures = [2]

    def once_broken(self, *args, **kwargs):
        if failures[0]:
            failures[0] -= 1
            raise optuna.exceptions.StorageInternalError("lost") from sa.exc.OperationalError("x", {}, Exception())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_user_attr", once_broken)
    store._retrying_storage_class.cache_clear()
    s = store.storage(url)
    trial = optuna.load_study(study_name="flaky", storage=s).ask()
    trial.set_user_attr("arch", {"pattern": "M-"})
    assert failures == [0] and study.trials[0].user_attrs == {"arch": {"pattern": "M-"}}
    store._retrying_storage_class.cache_clear()


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:Secr3t@host:notaport/db", "notaurl:Secr3t",
                                 "mysql://u:Secr3t@h/db"])
def test_a_url_no_driver_takes_is_one_sentence_without_its_password(url):
    for connect in (store.engine, store.storage):
        with pytest.raises(ConfigError, match="is not one SQLAlchemy can use") as e:
            connect(url)
        assert "Secr3t" not in str(e.value)


def test_telling_a_trial_another_driver_finished_raises_update_finished_trial_error(tmp_path):
    """However Optuna finds the trial finished (before its write, a ValueError; at it, UpdateFinishedTrialError),
    the runner sees one error, which it treats as 'the other driver's record stands'."""
    optuna = store.optuna_module()
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    ours = store.StudyHandle(optuna.create_study(study_name="s", storage=store.storage(url)), store.storage(url))
    ours.study.ask()
    ours.study.ask()
    theirs = store.load("s", url)  # the driver that took the study over
    theirs.tell(0, [1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError, match="trial 0 was finished by another driver"):
        ours.tell(0, [2.0])
    assert ours.trial(0).values == [1.0]
    with pytest.raises(ValueError, match="RUNNING") as refused:  # any other refusal stays Optuna's own
        ours.tell(1, state=optuna.trial.TrialState.RUNNING)
    assert not isinstance(refused.value, optuna.exceptions.UpdateFinishedTrialError)
    ours.tell(1, state=optuna.trial.TrialState.FAIL)
    assert ours.trial(1).state == optuna.trial.TrialState.FAIL
