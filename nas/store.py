"""The study store: connections to the databases studies live in, and opening a study there.

    h = open_study(spec, sampler)                # created with its spec stored, or resumed after a check
    h = load("demo", url)                        # an existing study, by name
    h.study.ask(); h.set_trial_attr(3, record.ARCH, {...}); h.trial(3)
    with engine(url).connect() as conn: ...      # plain SQL on the same database (the reader, the queue)

One cache per process holds both kinds of connection: a database server's Optuna storage and SQLAlchemy
engine are made once and shared, so that polling a study does not open a new pool of connections each
time (PostgreSQL refuses clients past its limit); an SQLite file's Optuna storage is made anew each time
(a file has no connection limit, and a study file removed and made again must not be held open).

Every PostgreSQL connection has a connect timeout, a statement timeout and TCP keepalives
(`settings().db_*`): a server that does not answer is an error within seconds, never a silent hang. A
database that goes away for a while is waited for: `retry` runs a read or write again with backoff while
its error is a lost connection (`transient`), for up to `settings().db_retry` seconds, and the Optuna
storages made here do so on every call, so that a study's driver rides out an outage with its trials
still running instead of failing them.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nas import record
from nas.settings import mask_url, normalize_url, settings
from nas.spec import StudySpec
from search_spaces.config import ConfigError

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

__all__ = [
    "StudyHandle",
    "check_resumable",
    "close",
    "delete_study",
    "engine",
    "load",
    "open_study",
    "optuna_module",
    "retry",
    "spec_key",
    "storage",
    "stored_spec",
    "study_names",
    "transient",
    "unreachable",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
_storages: dict[str, Any] = {}
_engines: dict[str, Any] = {}
_lock = threading.Lock()


def optuna_module():
    """Optuna, imported on first use and told to keep its per-trial INFO lines to itself."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ----- failures -----------------------------------------------------------------------------------
def transient(e: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) is a lost or refused connection, a timeout or a lock
    conflict: worth trying again once the database is back. A wrong query or a broken rule is not."""
    import sqlalchemy as sa

    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                          sa.exc.TimeoutError)):
            return True
        if isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated:
            return True
        if type(e).__module__.startswith(("psycopg", "sqlite3")) and type(e).__name__ in (
            "OperationalError", "InterfaceError", "ConnectionTimeout", "QueryCanceled", "SerializationFailure",
            "DeadlockDetected", "AdminShutdown", "CannotConnectNow",
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


def reason(e: BaseException) -> str:
    """The first line of the deepest database error behind `e` (no URL, no password: the driver's words)."""
    inner = e
    while inner.__cause__ is not None or getattr(inner, "orig", None) is not None:
        inner = getattr(inner, "orig", None) or inner.__cause__
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__


def unreachable(what: str, url: str, e: BaseException) -> ConfigError:
    """The one sentence for a database that did not answer."""
    return ConfigError(f"cannot reach {what} {mask_url(url)}: {reason(e)}")


def retry(fn: Callable[[], T], what: str, *, seconds: float | None = None) -> T:
    """`fn()`, tried again with backoff (0.5 s doubling to 10 s) while it fails with a `transient` error, for
    up to `seconds` (default `settings().db_retry`); then its last error is raised."""
    deadline = time.monotonic() + (settings().db_retry if seconds is None else seconds)
    delay = 0.5
    while True:
        try:
            return fn()
        except Exception as e:
            if not transient(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: the database did not answer (%s); trying again in %.1f s", what, reason(e), delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


# ----- connections --------------------------------------------------------------------------------
def _connect_args(url: str) -> dict[str, Any]:
    """What every connection to `url` is opened with: timeouts, so that nothing waits on a silent server."""
    if url.startswith("sqlite"):
        return {"timeout": 30}  # a study writing at the same moment holds the lock
    if url.startswith("postgresql"):
        s = settings()
        return {
            "connect_timeout": max(1, round(s.db_connect_timeout)),
            "options": f"-c statement_timeout={round(s.db_statement_timeout * 1000)}",
            # a peer that vanished (a dropped route, a host gone) is noticed instead of waited on forever
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
            "tcp_user_timeout": round(s.db_statement_timeout * 1000),
        }
    return {}


# Optuna's storage calls that go to the database (those its cache in front of it makes too)
_STORAGE_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial",
    "set_trial_param", "_set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "_get_trials", "get_best_trial",
    "_get_best_trial_id",
)
_in_call = threading.local()


@functools.cache
def _retrying_storage_class():
    """Optuna's RDBStorage whose every call is `retry`d. A write whose commit went through just before the
    connection broke is not done twice where that would show: a trial told twice is told once, a study
    created twice is found."""
    optuna = optuna_module()

    def wrap(name: str):
        method = getattr(optuna.storages.RDBStorage, name)

        @functools.wraps(method)
        def call(self, *args: Any, **kwargs: Any) -> Any:
            if getattr(_in_call, "active", False):  # one storage call made by another: the outer one retries
                return method(self, *args, **kwargs)
            tries = 0

            def once() -> Any:
                nonlocal tries
                tries += 1
                _in_call.active = True
                try:
                    return method(self, *args, **kwargs)
                except optuna.exceptions.UpdateFinishedTrialError:
                    if tries > 1 and name == "set_trial_state_values":
                        return True
                    raise
                except optuna.exceptions.DuplicatedStudyError:
                    if tries > 1 and name == "create_new_study":
                        return optuna.storages.RDBStorage.get_study_id_from_name(self, args[1] if len(args) > 1
                                                                                 else kwargs["study_name"])
                    raise
                finally:
                    _in_call.active = False

            return retry(once, f"Optuna storage ({name.lstrip('_')})")

        return call

    return type("RetryingRDBStorage", (optuna.storages.RDBStorage,), {n: wrap(n) for n in _STORAGE_CALLS})


def _new_storage(url: str, **engine_kwargs: Any):
    try:
        # heartbeats are the queue's: Optuna's RDB storage is used as a plain database
        return _retrying_storage_class()(
            url, engine_kwargs={"pool_pre_ping": True, "connect_args": _connect_args(url), **engine_kwargs}
        )
    except Exception as e:
        if transient(e):
            raise unreachable("the Optuna storage", url, e) from None
        import sqlalchemy as sa

        if isinstance(e, (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError, ImportError)):
            raise bad_url(url, e) from None
        raise


def storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for `url` (default: the settings' storage); every call on it is retried through a
    database outage (`retry`). A database that does not answer at all is a ConfigError."""
    url = normalize_url(url or settings().storage)
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return _new_storage(url)
    with _lock:
        if url not in _storages:
            _storages[url] = _new_storage(url, pool_size=2, max_overflow=6)
        return _storages[url]


def engine(url: str) -> sqlalchemy.Engine:
    """A SQLAlchemy engine for plain SQL on `url` (the reader's queries, the queue's tables); its connections
    have the timeouts of `_connect_args`."""
    import sqlalchemy as sa

    url = normalize_url(url)
    with _lock:
        if url not in _engines:
            kwargs: dict[str, Any] = {"pool_pre_ping": True, "connect_args": _connect_args(url)}
            if not url.startswith("sqlite"):
                kwargs.update(pool_size=3, max_overflow=5)
            try:
                _engines[url] = sa.create_engine(url, **kwargs)
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError, ImportError) as e:
                raise bad_url(url, e) from None
        return _engines[url]


def bad_url(url: str, e: BaseException) -> ConfigError:
    """The one sentence for a URL no driver takes (the URL shown only when it can be shown masked)."""
    shown = mask_url(url) if "://" in url else "given"
    why = str(e).splitlines()[0] if str(e) else type(e).__name__
    if url in why or ("://" in url and url.split("://", 1)[1] in why):
        why = type(e).__name__
    return ConfigError(
        f"the database URL {shown} is not one SQLAlchemy can use ({why}); write it as "
        "postgresql+psycopg://USER@HOST:5432/DB (the password in PGPASSWORD or ~/.pgpass) or sqlite:///PATH"
    )


def close(url_suffix: str = "") -> None:
    """Close the pooled connections of this process's shared storages and engines (those whose URL ends
    with `url_suffix`; all by default), e.g. before dropping their database."""
    with _lock:
        for url in [u for u in _storages if u.endswith(url_suffix)]:
            _storages.pop(url).engine.dispose()
        for url in [u for u in _engines if u.endswith(url_suffix)]:
            _engines.pop(url).dispose()


# ----- studies ------------------------------------------------------------------------------------
@dataclass
class StudyHandle:
    """An open study and the storage it was opened on. Optuna's `Study` numbers its trials and its storage
    identifies them by id; writing a trial's attributes goes through the storage, by id."""

    study: optuna.Study
    storage: Any
    _ids: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.study.study_name

    def trial_id(self, number: int) -> int:
        if number not in self._ids:
            sid = self.storage.get_study_id_from_name(self.name)
            self._ids[number] = self.storage.get_trial_id_from_study_id_trial_number(sid, number)
        return self._ids[number]

    def trial(self, number: int) -> optuna.trial.FrozenTrial:
        return self.storage.get_trial(self.trial_id(number))

    def set_trial_attr(self, number: int, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.trial_id(number), key, value)

    def tell(self, number: int, values: list[float] | None = None, state: Any = None) -> None:
        """`study.tell`. A trial that another driver finished first (it took the study over) raises
        UpdateFinishedTrialError however Optuna finds it: its write refuses with that error, but a `tell` that reads
        the trial as finished beforehand raises a plain ValueError."""
        try:
            self.study.tell(number, values, state=state)
        except ValueError:
            if not self.trial(number).state.is_finished():
                raise
            raise optuna_module().exceptions.UpdateFinishedTrialError(
                f"trial {number} was finished by another driver") from None

    def running_trial(self, number: int) -> optuna.trial.Trial:
        """The live `Trial` of a trial asked earlier (by a driver that stopped before starting it)."""
        return optuna_module().trial.Trial(self.study, self.trial_id(number))


def spec_key(spec: StudySpec) -> dict[str, Any]:
    """What must not change when a study is resumed: what is searched and how it is scored."""
    d = spec.model_dump(mode="json")
    keys = ("kind", "space", "ablation", "objectives", "constraints", "profile", "seeds", "early_stopping")
    return {k: d[k] for k in keys}


def stored_spec(study: optuna.Study) -> StudySpec | None:
    data = study.user_attrs.get(record.SPEC)
    return StudySpec.model_validate(data) if data is not None else None


def check_resumable(spec: StudySpec, stored: StudySpec | None, where: str | None = None) -> None:
    """A study of the spec's name already stored (in `where`, if that is worth saying) must be the same
    search: running it resumes it."""
    if stored is not None and spec_key(stored) != spec_key(spec):
        at = f" in {mask_url(where)}" if where else ""
        raise ConfigError(
            f"a study named {spec.name!r} already exists{at} with a different space, objectives, constraints "
            "or profile; give this spec another name (or delete the old study with `nas delete`)"
        )


def open_study(spec: StudySpec, sampler=None, *, create: bool = True, url: str | None = None) -> StudyHandle:
    """The spec's Optuna study in `url` (default: the spec's storage): created with the spec stored (its
    passwords masked; a grid's points enqueued), or loaded after checking that the stored spec is the same
    search. `sampler` may be a function of the number of trials the study holds already, which it is called
    with (a resumed study's sampler continues rather than starting its sequence again)."""
    optuna = optuna_module()
    url = url or spec.storage_url
    store = storage(url)
    make = sampler if callable(sampler) and not isinstance(sampler, optuna.samplers.BaseSampler) else None
    try:
        if make is not None:
            sid = store.get_study_id_from_name(spec.name)
            sampler = make(len(store.get_all_trials(sid, deepcopy=False)))
        study = optuna.load_study(study_name=spec.name, storage=store, sampler=sampler)
    except KeyError:
        if not create:
            raise ConfigError(f"no study named {spec.name!r} in {mask_url(url)}") from None
        study = optuna.create_study(
            study_name=spec.name, storage=store, directions=spec.directions, sampler=make(0) if make else sampler
        )
        study.set_user_attr(record.SPEC, spec.stored())
        study.set_user_attr(record.CREATED, time.time())
        if spec.sampler_name() == "grid":
            # Optuna's GridSampler stops the study from inside tell, which ask-and-tell cannot take:
            # the grid goes in as enqueued trials instead, each asked once
            for point in spec.grid_points():
                study.enqueue_trial(point, skip_if_exists=False)
        return StudyHandle(study, store)
    check_resumable(spec, stored_spec(study))
    return StudyHandle(study, store)


def study_names(url: str | None = None) -> list[str]:
    """Every study in the storage (hybrid-nas's and anyone else's), oldest first."""
    optuna = optuna_module()
    return [s.study_name for s in optuna.get_all_study_summaries(storage(url), include_best_trial=False)]


def load(name: str, url: str | None = None) -> StudyHandle:
    """An existing study by name; ConfigError naming the studies there when it is not one of them."""
    optuna = optuna_module()
    url = url or settings().storage
    store = storage(url)
    try:
        return StudyHandle(optuna.load_study(study_name=name, storage=store), store)
    except KeyError:
        names = study_names(url)
        hint = f"; studies there: {', '.join(names)}" if names else " (it holds no studies yet)"
        raise ConfigError(f"no study named {name!r} in {mask_url(url)}{hint}") from None


def delete_study(name: str, url: str | None = None) -> None:
    load(name, url)
    optuna_module().delete_study(study_name=name, storage=storage(url))
