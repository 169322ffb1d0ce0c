import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for the session's tests (started on a free port, token auth on)."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def urls(tmp_path):
    return {"storage": f"sqlite:///{tmp_path / 'studies.db'}", "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}"}
