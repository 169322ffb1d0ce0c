"""hybrid-nas: the service that searches hybrid attention / state-space language models.

One home per thing; imports run one way, from the command line down to the settings:

    cli ─► service/ (queue, scheduler, db + migrations) ─► runner (the ask/tell loop) ─► asha, display
     ├─► starter (the spec `nas init` writes)
     │                                                       ├─► executor (Ray) ─► workers
     ├─► export/ (hf, megatron, native)                       └─► tracking (MLflow)
     └─► report (an ablation's effects)
    each of them ─► reader (every read) ─► store (connections, open/resume) ─► spec ─► ablation, settings
                 ─► record (trial attributes, status, budget) and pareto, which import nothing of nas
    dashboard ─► auth (its users file: scrypt hashes) ─► settings

| module | owns |
|---|---|
| `settings` | every `NAS_*` setting and the config file, read in one place (database timeouts too); URL masking |
| `spec` | `StudySpec`: what a study searches, for which objectives, under which budget; its grid |
| `starter` | the commented spec `nas init` writes, sized for this machine (GPUs or not) |
| `ablation` | an ablation's design: the base, its factors, the architecture of each cell |
| `record` | what a study keeps in Optuna: attribute keys, trial status (interrupted, cancelled), budget, arch key |
| `pareto` | the one dominance test: Pareto front, ranks, crowding distance, hypervolume |
| `store` | the one connection cache (Optuna storages, SQLAlchemy engines; timeouts, retries); opening a study |
| `reader` | every read of a study, in plain SQL: lists, trial frames, summaries, Pareto sets, architectures |
| `report` | an ablation's report: means, intervals, differences from the base |
| `executor` | where trials run: a Ray cluster, or in-process; what the cluster can hold, why a job waits |
| `tracking` | MLflow: a parent run per study, a child run per trial |
| `asha` | early stopping (MO-ASHA): which trial to promote |
| `runner` | `run_study`: ask, train, tell, record; resumable |
| `display` | what a terminal (bars) or a pipe (lines) shows: a study's progress, an evaluation's scorecard |
| `units` | numbers for people (6.74B, 2.0 GiB, 128K) |
| `auth` | who may act on the dashboard: the users file, scrypt hashes of passwords and tokens |
| `export/` | training configs: Hugging Face (`hf`), Megatron-LM (`megatron`), the project's YAML (`native`) |
| `service/` | service mode: the queue's tables (`db`), submitting and steering studies (`queue`), `nas serve` |
| `cli` | the `nas` command line; the only place that turns an error into an exit code |

Heavy packages (ray, mlflow, optuna, torch) load inside the functions that need them.
"""

__version__ = "0.1.0"
