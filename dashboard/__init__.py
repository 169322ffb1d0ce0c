"""The hybrid-nas dashboard: a Streamlit app over the studies (`nas dashboard` starts it).

Pages: Studies (every study, live), Study (Pareto front, layer patterns, curves, importances, trials),
Ablation (effects with confidence intervals), Submit (validate and start or queue a spec) and Export
(a trial as a Hugging Face config, Megatron-LM arguments or YAML). It reads through `nas` (the Optuna
storage via `nas.reader`, MLflow, the queue) and writes only through `nas`'s public functions.
"""
