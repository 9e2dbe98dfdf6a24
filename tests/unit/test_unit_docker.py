"""docker/Dockerfile and .dockerignore, read as text (no Docker engine here; hadolint
lints the Dockerfile in `make lint`): the image holds exactly the project's packages,
runs as an unprivileged user, and no secret can reach a layer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
IGNORED = [
    line.strip()
    for line in (ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(f"{name} ")]


def wheel_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: list[str] = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def test_the_image_starts_from_prefect_on_python_3_11() -> None:
    assert instructions("FROM") == ["prefecthq/prefect:3-python3.11"]


def test_it_copies_exactly_the_packages_the_wheel_has() -> None:
    copied = {source.rstrip("/") for args in instructions("COPY") for source in args.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", *wheel_packages()}
    # The build context lets in the same, and nothing else.
    assert IGNORED[0] == "*"
    let_in = {line[1:].rstrip("/") for line in IGNORED if line.startswith("!")}
    assert let_in == {"pyproject.toml", "README.md", *wheel_packages()}


def test_no_secret_can_reach_a_layer() -> None:
    let_in = [line for line in IGNORED if line.startswith("!")]
    for secret in (".env", ".state", "docker/.env"):
        assert not any(secret.startswith(line[1:]) for line in let_in), secret
    for args in instructions("ENV") + instructions("ARG"):
        assert not re.search(r"PASSWORD|TOKEN|SECRET|_KEY\b|API_KEY", args), args


def test_flows_run_as_an_unprivileged_user() -> None:
    users = instructions("USER")
    assert users and users[-1].isdigit() and int(users[-1]) >= 1000
    assert DOCKERFILE.rindex("USER ") < DOCKERFILE.index("CMD ")


def test_the_tools_match_the_platforms_postgresql() -> None:
    [major] = instructions("ARG")
    assert major == "PG_MAJOR=15"
    assert '"postgresql-client-${PG_MAJOR}" redis-tools' in DOCKERFILE
    assert "PG_BIN_DIR=/usr/lib/postgresql/${PG_MAJOR}/bin" in DOCKERFILE
