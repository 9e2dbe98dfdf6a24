"""The locks flows take (`flows.locks`) on the session's Prefect server: a limit created
by many runs at once, and a lock judged free or taken by its slots."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from flows.locks import ensure_limit, lock_if_free, system_lock


def test_runs_creating_one_limit_at_once_all_get_it() -> None:
    name = f"test-limit-{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(6)
    got: list[Any] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(timeout=10)
            got.append(ensure_limit(name))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(got) == 6
    assert {(limit.name, limit.limit, str(limit.id)) for limit in got} == {
        (name, 1, str(got[0].id))
    }


def test_a_lock_is_free_or_taken_by_its_slots_at_once() -> None:
    name = f"test-lock-{uuid.uuid4().hex[:8]}"
    with lock_if_free(name) as held:
        assert held
    with system_lock(name):
        started = time.monotonic()
        with lock_if_free(name) as held:
            assert not held
        assert time.monotonic() - started < 5, "a taken lock is said so at once"
    with lock_if_free(name) as held:
        assert held
