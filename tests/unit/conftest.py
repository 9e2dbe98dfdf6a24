"""The unit tests use `feedback_ops` and `RunCli` from tests/conftest.py."""
