"""Shared test helpers live in tests/ (archgen.py, profiles.py, kernel_inputs.py); pyproject's pythonpath puts
them on sys.path."""
