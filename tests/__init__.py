"""Tests of mstrain (a package: see pythonpath in pyproject.toml)."""
