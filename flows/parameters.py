"""Bounds of flow parameters, in the types the parameter schema is built from.

Prefect turns these into the schema's `minimum` and `maximum`: the run form in the UI
refuses a value outside them, and a run started any other way fails its parameter
validation before the flow's first step. Each parameter's description is in its flow's
docstring (`Args:`), where Prefect reads it from.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

RestoreJobs = Annotated[int, Field(ge=1, le=16)]
"""Parallel `pg_restore` jobs: at least one, and no more than a 2–16 core server uses."""

AtLeastOne = Annotated[int, Field(ge=1)]
"""A count of days, weeks or years to keep backups."""

LockWaitSeconds = Annotated[int, Field(ge=1, le=3600)]
"""Seconds to wait for a table lock: pg_dump takes 0 as "wait forever"."""
