"""The run form the Prefect UI draws from each deployment's parameter schema: every field
explains itself, numbers have their bounds, closed sets are choices."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

from deployments import DeploymentSpec, all_deployments
from flows.parameters import TITLES
from policy.webhooks import Failure

SPECS = all_deployments()


def form_of(spec: DeploymentSpec) -> dict[str, Any]:
    """The schema the deployment is registered with (what the UI's form is made from):
    the flow's own, but for the fields' titles."""
    schema: dict[str, Any] = spec.to_runner()._parameter_openapi_schema.model_dump()
    flows_own = parameter_schema(spec.flow).model_dump()
    for name, prop in flows_own["properties"].items():
        prop["title"] = schema["properties"][name]["title"]
    assert schema == flows_own
    return schema


@pytest.mark.parametrize("spec", SPECS, ids=[s.full_name for s in SPECS])
def test_every_parameter_has_a_description(spec: DeploymentSpec) -> None:
    properties = form_of(spec)["properties"]

    assert properties, f"{spec.full_name} has no parameters"
    for name, prop in properties.items():
        description = prop.get("description") or ""
        assert len(description.split()) >= 4, f"{spec.full_name}: {name} has no description"


@pytest.mark.parametrize("spec", SPECS, ids=[s.full_name for s in SPECS])
def test_every_field_has_a_title_for_operators(spec: DeploymentSpec) -> None:
    """The form's label is the field's title: words, not the parameter's own name."""
    for name, prop in form_of(spec)["properties"].items():
        assert prop["title"] == TITLES[name], f"{spec.full_name}: {name} has no title"
        assert "_" not in prop["title"] and prop["title"][0].isupper(), prop["title"]


def test_the_parameters_of_every_deployment_are_counted() -> None:
    # A new parameter without a description fails the test above; this one notices a
    # deployment whose form lost its parameters altogether.
    assert sum(len(form_of(spec)["properties"]) for spec in SPECS) >= 52


def bounds(flow_name: str, parameter: str) -> tuple[Any, Any]:
    (spec,) = [s for s in SPECS if s.flow_name == flow_name][:1]
    prop = form_of(spec)["properties"][parameter]
    return prop.get("minimum"), prop.get("maximum")


@pytest.mark.parametrize(
    ("flow_name", "parameter", "expected"),
    [
        ("database-restore", "jobs", (1, 16)),
        ("backup-verify", "jobs", (1, 16)),
        ("database-backup", "lock_wait_timeout_seconds", (1, 3600)),
        ("database-backup", "stall_timeout_seconds", (10, 3600)),
        ("backup-retention", "daily_days", (1, None)),
        ("backup-retention", "weekly_weeks", (1, None)),
        ("backup-retention", "monthly_years", (1, None)),
        ("webhook-reconciliation", "lookback_hours", (1, 720)),
        ("webhook-replay", "approval_timeout_seconds", (60, 86400)),
    ],
)
def test_numbers_have_their_bounds(flow_name: str, parameter: str, expected: tuple) -> None:
    assert bounds(flow_name, parameter) == expected


def test_an_alert_action_is_a_choice() -> None:
    (spec,) = [s for s in SPECS if s.flow_name == "alert-acknowledge"][:1]
    schema = form_of(spec)
    action = schema["properties"]["action"]
    choices = schema["definitions"][action["$ref"].rsplit("/", 1)[1]]["enum"]

    assert choices == ["acknowledge", "resolve"]
    assert action["default"] == "acknowledge"


def test_every_flows_defaults_pass_the_cli_check() -> None:
    """`run` checks parameters against each flow's own types before anything starts:
    every flow's defaults pass it (a flow whose annotations cannot be resolved would
    fail here, not in an operator's terminal)."""
    from deployments import flows_by_name
    from feedback_ops.cli import check_parameters

    required = {
        "alert-acknowledge": {"dedup_key": "database-backup:platform-postgres"},
        "pos-failover": {"provider": "square", "reason": "primary_endpoint_down"},
        "webhook-replay": {"since": "2026-11-01T08:00:00"},
    }
    for name, flow in flows_by_name().items():
        given = required.get(name, {})
        assert check_parameters(flow, given) == given, name


def test_a_webhook_replay_chooses_its_provider_and_failures_from_lists() -> None:
    (spec,) = [s for s in SPECS if s.flow_name == "webhook-replay"][:1]
    schema = form_of(spec)
    properties = schema["properties"]

    assert properties["provider"]["enum"] == ["all", "square", "shopify", "zettle"]
    failures = properties["failures"]["items"]["enum"]
    assert set(failures) == {kind.value for kind in Failure}
    assert properties["failures"]["default"] == failures
    assert properties["dry_run"]["default"] is True
    assert schema["required"] == ["since"]
