"""The metric names a PromQL expression reads, and the expressions of the project's
alerting rules and Grafana dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docker" / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "docker" / "prometheus" / "rules.test.yml"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "feedback-ops.json"
GRAFANA_PROVISIONING = ROOT / "docker" / "grafana" / "provisioning"

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan", "atan2"}
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects: every identifier that is not a function, an
    aggregation, a keyword, a label (in braces or in a `by (...)` list), a string, a
    duration or a Grafana variable."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def rule_expressions() -> dict[str, str]:
    """Each alerting rule of rules.yml: its name and expression."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    """The provisioned dashboard, as Grafana reads it."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in document.get("panels", []):
        yield panel
        yield from panels(panel)


def panel_expressions(document: dict[str, Any]) -> dict[str, list[str]]:
    """Each graphing panel's title and the expressions of its queries."""
    return {
        panel["title"]: [target["expr"] for target in panel.get("targets", [])]
        for panel in panels(document)
        if panel["type"] != "row"
    }
