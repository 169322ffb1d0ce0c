"""The study store: connections to the databases studies live in, and opening a study there.

    h = open_study(spec, sampler)                # created with its spec stored, or resumed after a check
    h = load("demo", url)                        # an existing study, by name
    h.study.ask(); h.set_trial_attr(3, record.ARCH, {...}); h.trial(3)
    with engine(url).connect() as conn: ...      # plain SQL on the same database (the reader, the queue)

One cache per process holds both kinds of connection: a database server's Optuna storage and SQLAlchemy
engine are made once and shared, so that polling a study does not open a new pool of connections each
time (PostgreSQL refuses clients past its limit); an SQLite file's Optuna storage is made anew each time
(a file has no connection limit, and a study file removed and made again must not be held open).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    "spec_key",
    "storage",
    "stored_spec",
    "study_names",
]

_storages: dict[str, Any] = {}
_engines: dict[str, Any] = {}
_lock = threading.Lock()


def optuna_module():
    """Optuna, imported on first use and told to keep its per-trial INFO lines to itself."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ----- connections --------------------------------------------------------------------------------
def storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for `url` (default: the settings' storage)."""
    optuna = optuna_module()
    url = normalize_url(url or settings().storage)
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # heartbeats are the queue's: Optuna's RDB storage is used as a plain database
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    with _lock:
        if url not in _storages:
            _storages[url] = optuna.storages.RDBStorage(
                url, engine_kwargs={"pool_pre_ping": True, "pool_size": 2, "max_overflow": 6}
            )
        return _storages[url]


def engine(url: str) -> sqlalchemy.Engine:
    """A SQLAlchemy engine for plain SQL on `url` (the reader's queries, the queue's tables)."""
    import sqlalchemy as sa

    url = normalize_url(url)
    with _lock:
        if url not in _engines:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": 30}  # a study writing at the same moment holds the lock
            else:
                kwargs.update(pool_size=3, max_overflow=5)
            try:
                _engines[url] = sa.create_engine(url, **kwargs)
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
                raise ConfigError(
                    f"the database URL {mask_url(url)} is not one SQLAlchemy can use: {e}; write it as "
                    "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB or sqlite:///PATH"
                ) from None
        return _engines[url]


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


def open_study(spec: StudySpec, sampler=None, *, create: bool = True) -> StudyHandle:
    """The spec's Optuna study: created with the spec stored (a grid's points enqueued), or loaded after
    checking that the stored spec is the same search."""
    optuna = optuna_module()
    store = storage(spec.storage_url)
    try:
        study = optuna.load_study(study_name=spec.name, storage=store, sampler=sampler)
    except KeyError:
        if not create:
            raise ConfigError(f"no study named {spec.name!r} in {mask_url(spec.storage_url)}") from None
        study = optuna.create_study(
            study_name=spec.name, storage=store, directions=spec.directions, sampler=sampler
        )
        study.set_user_attr(record.SPEC, spec.model_dump(mode="json"))
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
