"""Which work pools run the scheduled work, and whether the standby may take over alone.

`feedback-ops deploy` registers every deployment on a primary pool and, when asked, a
twin of each on a standby pool in the backup region with its schedules inactive.
`feedback-ops pool-failover` swaps which set is active. This block holds the one
decision an operator makes ahead of time: may the watcher swap by itself when the
primary pool has no worker left?
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl

PRIMARY_POOL = "ops-primary"
STANDBY_POOL = "ops-standby"


class WorkPoolFailover(Block):
    """The failover policy of the work pools: off by default, so a person decides.

    With `auto_failover` on, the `work-pool-watch` flow that Prefect starts when the
    primary pool goes not-ready moves the schedules to the standby pool itself (as
    `feedback-ops pool-failover --to standby` does) and says so in its alert.

    Example:
        Read the policy saved by `feedback-ops up` or `config sync`:
        ```python
        from blocks.work_pools import WorkPoolFailover

        policy = WorkPoolFailover.load("BLOCK_NAME")
        print(policy.auto_failover)
        ```
    """

    _block_type_name: ClassVar[str] = "Feedback Ops Work Pool Failover"
    _block_type_slug: ClassVar[str] = "feedback-ops-work-pool-failover"
    _description: ClassVar[str] = "Whether the standby work pool takes over by itself."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(
        "https://docs.prefect.io/v3/deploy/infrastructure-concepts/work-pools"
    )

    auto_failover: bool = Field(
        default=False,
        description=(
            "Move the schedules to the standby pool as soon as the primary pool is "
            "not ready, without waiting for an operator."
        ),
    )
