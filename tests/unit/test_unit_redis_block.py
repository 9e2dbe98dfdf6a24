"""The Redis block and the REDIS_* variables that configure it (pure: no API, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.names import REDIS_BLOCK
from blocks.redis import RedisServer
from feedback_ops.config import blocks_from_env
from feedback_ops.errors import ConfigError

PASSWORD = "s3cr3t:p@ss/wörd#1?"
ENCODED_PASSWORD = "s3cr3t%3Ap%40ss%2Fw%C3%B6rd%231%3F"
REDIS_URL = f"rediss://ops%20user:{ENCODED_PASSWORD}@cache.redis-cloud.example:16380"


def redis_block(env: dict[str, str]) -> RedisServer:
    block = blocks_from_env(env)[REDIS_BLOCK]
    assert isinstance(block, RedisServer)
    return block


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        blocks_from_env(env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def url_error(url: str) -> str:
    with pytest.raises(ConfigError) as caught:
        RedisServer.from_url(url)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- RedisServer.from_url and what the block hands to clients ---------------------------


def test_a_rediss_url_with_user_and_encoded_password() -> None:
    block = RedisServer.from_url(REDIS_URL)

    assert (block.host, block.port, block.username, block.tls) == (
        "cache.redis-cloud.example",
        16380,
        "ops user",
        True,
    )
    assert block.password is not None
    assert block.password.get_secret_value() == PASSWORD
    assert block.display_name == "rediss://cache.redis-cloud.example:16380"
    assert block.cli_args() == [
        "-h",
        "cache.redis-cloud.example",
        "-p",
        "16380",
        "--user",
        "ops user",
        "--tls",
    ]
    assert block.cli_env() == {"REDISCLI_AUTH": PASSWORD}
    assert block.client_kwargs(db=3) == {
        "db": 3,
        "socket_timeout": 30.0,
        "socket_connect_timeout": 10,
        "client_name": "feedback-ops",
        "host": "cache.redis-cloud.example",
        "port": 16380,
        "ssl": True,
        "username": "ops user",
        "password": PASSWORD,
    }


def test_the_password_is_never_in_printable_places() -> None:
    block = RedisServer.from_url(REDIS_URL)

    for text in (block.display_name, " ".join(block.cli_args()), repr(block), str(block)):
        assert PASSWORD not in text
        assert ENCODED_PASSWORD not in text
        assert "s3cr3t" not in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://cache.internal", ("cache.internal", 6379, None, None, False)),
        ("redis://cache.internal:6380", ("cache.internal", 6380, None, None, False)),
        ("redis://:pw@10.0.0.5:7000", ("10.0.0.5", 7000, None, "pw", False)),
        ("redis://default:pw@[::1]:6379", ("::1", 6379, "default", "pw", False)),
        ("rediss://cache.internal", ("cache.internal", 6379, None, None, True)),
        ("  redis://cache.internal:6381  ", ("cache.internal", 6381, None, None, False)),
        ("redis://", ("127.0.0.1", 6379, None, None, False)),
    ],
)
def test_from_url_parses(url: str, expected: tuple[object, ...]) -> None:
    block = RedisServer.from_url(url)

    password = block.password.get_secret_value() if block.password else None
    assert (block.host, block.port, block.username, password, block.tls) == expected


def test_a_plain_redis_url_without_auth() -> None:
    block = RedisServer.from_url("redis://cache.internal:6380")

    assert block.display_name == "redis://cache.internal:6380"
    assert block.cli_args() == ["-h", "cache.internal", "-p", "6380"]
    assert block.cli_env() == {}
    kwargs = block.client_kwargs()
    assert kwargs["ssl"] is False
    assert kwargs["db"] == 0
    assert "username" not in kwargs and "password" not in kwargs


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        (f"http://ops:{ENCODED_PASSWORD}@cache.internal:6379", "'http'"),
        (f"redis+tls://ops:{ENCODED_PASSWORD}@cache.internal:6379", "'redis+tls'"),
        (f"unix://ops:{ENCODED_PASSWORD}@/run/redis.sock", "'unix'"),
        ("cache.internal:6379", "'(none)'"),
        ("hunter2", "'(none)'"),
        ("//cache.internal:6379", "'(none)'"),
        ("", "'(none)'"),
    ],
)
def test_a_bad_scheme_is_one_line_naming_the_variable(url: str, scheme: str) -> None:
    message = url_error(url)

    assert message == (
        f"REDIS_URL must be a redis://[user:password@]host:port URL, got scheme {scheme}"
    )
    assert "s3cr3t" not in message and "hunter2" not in message


def test_from_url_names_the_variable_it_is_given() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisServer.from_url("http://h", variable="TARGET_REDIS_URL")

    assert str(caught.value) == (
        "TARGET_REDIS_URL must be a redis://[user:password@]host:port URL, got scheme 'http'"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            f"redis://ops:{ENCODED_PASSWORD}@cache.internal:notaport",
            "Port could not be cast to integer value as 'notaport'",
        ),
        (f"redis://ops:{ENCODED_PASSWORD}@cache.internal:65536", "Port out of range 0-65535"),
    ],
)
def test_an_invalid_port_is_one_line_without_the_password(url: str, reason: str) -> None:
    message = url_error(url)

    assert message == (
        "REDIS_URL has an invalid port (a password with / # ? @ must be percent-encoded)"
    ), reason
    assert "s3cr3t" not in message


@pytest.mark.parametrize("password", ["hunter2/xyz", "hunter2#xyz", "hunter2?xyz"])
def test_an_unencoded_password_never_reaches_the_error(password: str) -> None:
    message = url_error(f"redis://:{password}@cache.internal:6379")

    assert "hunter2" not in message


# --- unix sockets and self-hosted servers -------------------------------------------------


def test_a_unix_socket_block_connects_by_path_only() -> None:
    block = RedisServer(unix_socket_path="/run/redis/redis.sock", username="ops")

    kwargs = block.client_kwargs(db=2)
    assert kwargs == {
        "db": 2,
        "socket_timeout": 30.0,
        "socket_connect_timeout": 10,
        "client_name": "feedback-ops",
        "unix_socket_path": "/run/redis/redis.sock",
        "username": "ops",
    }
    assert not {"host", "port", "ssl"} & set(kwargs)
    assert block.cli_args() == ["-s", "/run/redis/redis.sock", "--user", "ops"]
    assert block.display_name == "unix:///run/redis/redis.sock"


def test_a_default_block_is_local_logical_and_not_self_hosted() -> None:
    block = RedisServer()

    assert block.display_name == "redis://127.0.0.1:6379"
    assert block.snapshot_method == "logical"
    assert block.self_hosted is False


@pytest.mark.parametrize(
    ("data_dir", "stop", "start", "expected"),
    [
        ("/var/lib/redis", ["docker", "stop", "redis"], ["docker", "start", "redis"], True),
        (None, ["docker", "stop", "redis"], ["docker", "start", "redis"], False),
        ("", ["docker", "stop", "redis"], ["docker", "start", "redis"], False),
        ("/var/lib/redis", [], ["docker", "start", "redis"], False),
        ("/var/lib/redis", ["docker", "stop", "redis"], [], False),
    ],
)
def test_self_hosted_needs_data_dir_and_both_commands(
    data_dir: str | None, stop: list[str], start: list[str], expected: bool
) -> None:
    block = RedisServer(data_dir=data_dir, stop_command=stop, start_command=start)

    assert block.self_hosted is expected


# --- the REDIS_* variables through blocks_from_env ----------------------------------------


def test_the_redis_block_is_always_configured(tmp_path: Path) -> None:
    block = redis_block({"FEEDBACK_OPS_STATE_DIR": str(tmp_path)})

    assert block.model_dump() == RedisServer().model_dump()


def test_redis_url_sets_the_connection() -> None:
    block = redis_block({"REDIS_URL": REDIS_URL})

    assert (block.host, block.port, block.username, block.tls) == (
        "cache.redis-cloud.example",
        16380,
        "ops user",
        True,
    )
    assert block.password is not None
    assert block.password.get_secret_value() == PASSWORD
    assert PASSWORD not in block.display_name
    assert PASSWORD not in " ".join(block.cli_args())


def test_a_bad_redis_url_is_a_config_error_without_the_password() -> None:
    message = config_error({"REDIS_URL": f"https://ops:{ENCODED_PASSWORD}@cache.internal"})

    assert message == (
        "REDIS_URL must be a redis://[user:password@]host:port URL, got scheme 'https'"
    )
    assert PASSWORD not in message and ENCODED_PASSWORD not in message


def test_a_redis_url_without_a_password_clears_the_old_one() -> None:
    existing = blocks_from_env({"REDIS_URL": REDIS_URL})

    blocks = blocks_from_env({"REDIS_URL": "redis://cache.internal:6379"}, existing)

    block = blocks[REDIS_BLOCK]
    assert isinstance(block, RedisServer)
    assert (block.host, block.port, block.username, block.password, block.tls) == (
        "cache.internal",
        6379,
        None,
        None,
        False,
    )


@pytest.mark.parametrize("method", ["rdb", "logical"])
def test_snapshot_method(method: str) -> None:
    assert redis_block({"REDIS_SNAPSHOT_METHOD": method}).snapshot_method == method


@pytest.mark.parametrize("method", ["RDB", "dump", "rdb ", "aof"])
def test_an_invalid_snapshot_method_names_the_variable(method: str) -> None:
    assert config_error({"REDIS_SNAPSHOT_METHOD": method}) == (
        f"REDIS_SNAPSHOT_METHOD must be rdb or logical, got {method!r}"
    )


def test_self_hosted_variables_split_commands_shell_style() -> None:
    block = redis_block(
        {
            "REDIS_SNAPSHOT_METHOD": "rdb",
            "REDIS_DATA_DIR": "/srv/redis data",
            "REDIS_STOP_COMMAND": "docker compose -f '/srv/my stack/compose.yml' stop redis",
            "REDIS_START_COMMAND": "sh -c \"systemctl start redis && sleep 1\"  --flag='a b'",
        }
    )

    assert block.snapshot_method == "rdb"
    assert block.data_dir == "/srv/redis data"
    assert block.stop_command == [
        "docker",
        "compose",
        "-f",
        "/srv/my stack/compose.yml",
        "stop",
        "redis",
    ]
    assert block.start_command == ["sh", "-c", "systemctl start redis && sleep 1", "--flag=a b"]
    assert block.self_hosted is True


def test_empty_self_hosted_variables_clear_the_existing_block() -> None:
    existing = blocks_from_env(
        {
            "REDIS_DATA_DIR": "/var/lib/redis",
            "REDIS_STOP_COMMAND": "docker stop redis",
            "REDIS_START_COMMAND": "docker start redis",
        }
    )
    old = existing[REDIS_BLOCK]
    assert isinstance(old, RedisServer) and old.self_hosted

    block = blocks_from_env(
        {"REDIS_DATA_DIR": "", "REDIS_STOP_COMMAND": "", "REDIS_START_COMMAND": ""}, existing
    )[REDIS_BLOCK]

    assert isinstance(block, RedisServer)
    assert (block.data_dir, block.stop_command, block.start_command) == (None, [], [])
    assert block.self_hosted is False


def test_unset_redis_variables_keep_the_existing_block() -> None:
    existing = blocks_from_env(
        {
            "REDIS_URL": REDIS_URL,
            "REDIS_SNAPSHOT_METHOD": "rdb",
            "REDIS_DATA_DIR": "/var/lib/redis",
            "REDIS_STOP_COMMAND": "docker stop redis",
            "REDIS_START_COMMAND": "docker start redis",
        }
    )

    blocks = blocks_from_env({}, existing)

    assert blocks[REDIS_BLOCK].model_dump() == existing[REDIS_BLOCK].model_dump()


@pytest.mark.parametrize(
    ("variable", "command", "reason"),
    [
        ("REDIS_START_COMMAND", "docker start 'redis", "No closing quotation"),
        ("REDIS_START_COMMAND", 'sh -c "redis-server', "No closing quotation"),
        ("REDIS_STOP_COMMAND", "docker stop redis\\", "No escaped character"),
    ],
)
def test_an_unbalanced_command_names_the_variable(variable: str, command: str, reason: str) -> None:
    assert config_error({variable: command}) == (
        f"{variable} is not a valid command line: {reason}"
    )
