"""Shared test helpers live in tests/ (archgen.py, profiles.py); pyproject's pythonpath puts them on sys.path."""
