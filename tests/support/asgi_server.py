"""An ASGI app (FastAPI) served by uvicorn in a thread on a loopback port of its own."""

from __future__ import annotations

import socket
import threading
from typing import Any, Self

import uvicorn

from support.net import LOOPBACK, wait_until


class ThreadedServer:
    """Serves `app` on 127.0.0.1 from a daemon thread until `stop()`."""

    def __init__(self, app: Any, name: str, interface: str = "auto") -> None:
        self.app = app
        self.name = name
        self.interface = interface
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self) -> int:
        """Serve; return the port once the server accepts requests."""
        # A socket bound here (not a port number handed to uvicorn) leaves no window in
        # which another process could take the port. Made with IPPROTO_TCP, so that
        # asyncio sets TCP_NODELAY on the connections it accepts: uvicorn writes an
        # answer's headers and body apart, and without it the body would wait for the
        # client's delayed ACK, about 40 ms an answer.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            interface=self.interface,  # type: ignore[arg-type]
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread = thread
        thread.start()

        def ready() -> bool:
            if not thread.is_alive():
                raise RuntimeError(f"the {self.name} server thread exited during startup")
            return server.started

        wait_until(ready, timeout=15, what=f"{self.name} on {LOOPBACK}:{self.port}")
        return self.port

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None


class LoopbackService:
    """A fake of an outside provider served on loopback: the lifecycle its subclasses
    share. A subclass sets `name` (and `interface` if not "auto") and gives its ASGI
    app from `asgi_app()`; use it as a context manager, `url` is its base URL."""

    name = "loopback service"
    interface = "auto"

    def __init__(self) -> None:
        self._served: ThreadedServer | None = None
        self.port = 0

    def asgi_app(self) -> Any:
        """The ASGI application to serve."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Serve in a background thread; return once the server accepts requests."""
        self._served = ThreadedServer(self.asgi_app(), self.name, self.interface)
        self.port = self._served.start()

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._served is not None:
            self._served.stop()
        self._served = None
