-- Run once by the postgres image when its volume is new: MLflow's backend store gets a database of its
-- own (it and Optuna both keep an `alembic_version` table); the queue and Optuna share POSTGRES_DB (nas).
CREATE DATABASE mlflow;
