"""Tasks on the platform's Prometheus Pushgateway: one push of a flow's figures."""

from __future__ import annotations

from prefect import get_run_logger

from blocks.metrics import Figures, MetricsPushgateway, push
from feedback_ops.errors import OpsError
from tasks import QUICK, step


@step("push-metrics", limit=QUICK, retries=0)
def push_metrics(gateway: MetricsPushgateway, job: str, deployment: str, figures: Figures) -> bool:
    """Replace the group of `job` and `deployment` on the Pushgateway with `figures`.

    Returns False when the push failed: that is a one-line warning naming the
    Pushgateway's host and the reason, never the run's failure, and not retried (the
    flow's next run pushes fresher figures anyway).
    """
    logger = get_run_logger()
    try:
        target = gateway.target()
        if target is None:
            return False
        push(target, job, {"deployment": deployment}, figures)
    except OpsError as exc:
        logger.warning("Metrics not pushed: %s", exc)
        return False
    logger.info(
        "Pushed %d figure(s) to the Pushgateway at %s as job %s, deployment %s",
        sum(1 for _ in figures),
        target.address,
        job,
        deployment,
    )
    return True
