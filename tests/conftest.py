"""Shared test helpers live in tests/ (archgen.py, profiles.py, studyutil.py, dashutil.py, kernel_inputs.py);
pyproject's pythonpath puts them on sys.path for every test folder."""
