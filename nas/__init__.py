"""hybrid-nas: the service that searches hybrid attention / state-space language models.

`nas` holds the study specs, the Optuna runner, the Ray executor, MLflow tracking, the queue, export
and the `nas` command line. Heavy packages (ray, mlflow, optuna, torch) load inside the functions that
need them.
"""

__version__ = "0.1.0"
