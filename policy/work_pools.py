"""Work pools: how urgent it is that the primary pool has no worker left to run flows."""

from __future__ import annotations

import datetime

from policy.periods import Period, business_period
from policy.response import Severity


def pool_down_severity(at: datetime.datetime) -> Severity:
    """The severity of the primary work pool going not-ready at `at` (aware).

    Nothing scheduled runs until someone acts: in Swedish business hours the POS sweeps
    and webhook replays that businesses feel stop at once, so it is critical; at other
    times the backups wait (the 02:00 backup would be missed), which is still high.
    """
    if business_period(at) in (Period.PEAK, Period.BUSINESS):
        return Severity.CRITICAL
    return Severity.HIGH
