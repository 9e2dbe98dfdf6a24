"""Test setup for the policy package."""

import sys
from pathlib import Path

# The tests import the repository's packages from the working tree; until the project
# config puts the repository root on pytest's path, add it here.
_REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])
if _REPOSITORY_ROOT not in sys.path:
    sys.path.insert(0, _REPOSITORY_ROOT)
