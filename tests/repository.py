"""The repository's root folder, for tests that read its docs, scripts and config files (test
modules sit one or two folders below tests/; this file sits in tests/ itself)."""

from pathlib import Path

#: The folder holding pyproject.toml, qbc/, docs/ and scripts/.
ROOT = Path(__file__).resolve().parents[1]
