"""Names the fixtures and the tests agree on."""

EVERY_BLOCK = "every block"
"""Ask `save_blocks` for every block the environment describes, not only those a flow
is pointed at."""
