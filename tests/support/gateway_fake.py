"""A real HTTP server on loopback that answers like the platform's API gateway.

The paths and bodies are the runbook's: `GET /health`, `GET /pos/health/{provider}`,
`POST /admin/pos/failover` (`{"provider", "reason"}`), `POST` and `DELETE
/admin/maintenance`, `POST /admin/disaster-recovery/failover` and `GET
/admin/disaster-recovery/status`. Admin paths take `Authorization: Bearer <token>`
and answer 401 `{"error": "invalid admin token"}` otherwise.

The fake keeps the state the commands change (which endpoint each provider uses,
maintenance mode and its history, the failover's progress) and records every request.
A disaster-recovery failover becomes healthy `dr_healthy_after` seconds after it was
asked for, or never when that is None; `/health` reports `error_rate` as set. `fail` scripts
answers the way a gateway or its load balancer fails: a status with a JSON error, an
HTML page, a `Retry-After`, or an answer slower than the client waits.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from support.asgi_server import LoopbackService

ADMIN_TOKEN = "gw-admin-7c1e9a3f5b2d4e6a8c0f"
PROVIDERS = ("square", "shopify", "zettle")


@dataclass(frozen=True)
class GatewayRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any
    """The parsed JSON body, or None."""


@dataclass
class Scripted:
    """The next `remaining` answers to `method path`: what to answer instead."""

    method: str
    path: str
    status: int
    remaining: int
    retry_after: str | None = None
    html: bool = False
    delay_seconds: float = 0.0


class GatewayFake(LoopbackService):
    """The platform gateway on a loopback port; a context manager."""

    name = "gateway-fake"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[GatewayRequest] = []
        self._scripted: list[Scripted] = []
        self.active_endpoint = dict.fromkeys(PROVIDERS, "primary")
        self.maintenance: dict[str, Any] | None = None
        self.pos_health = {p: {"provider": p, "healthy": True} for p in PROVIDERS}
        self._dr_defaults()
        super().__init__()
        self.app = self._build_app()

    def asgi_app(self) -> Any:
        """The app this fake serves."""
        return self.app

    def env(self) -> dict[str, str]:
        """The variables that point the project's gateway block at this fake."""
        return {"GATEWAY_URL": self.url, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}

    def fail(
        self,
        method: str,
        path: str,
        status: int = 503,
        times: int = 1,
        *,
        retry_after: str | None = None,
        html: bool = False,
        delay_seconds: float = 0.0,
    ) -> None:
        """Answer the next `times` requests to `method path` with `status` (an HTML page
        when `html`), after `delay_seconds`, with `Retry-After` when given."""
        with self._lock:
            self._scripted.append(
                Scripted(method, path, status, times, retry_after, html, delay_seconds)
            )

    def reset(self) -> None:
        """Forget requests and scripts; every provider healthy on its primary again."""
        with self._lock:
            self._requests.clear()
            self._scripted.clear()
            self.active_endpoint = dict.fromkeys(PROVIDERS, "primary")
            self.maintenance = None
            self.pos_health = {p: {"provider": p, "healthy": True} for p in PROVIDERS}
            self._dr_defaults()

    def _dr_defaults(self) -> None:
        self.maintenance_log: list[tuple[str, Any]] = []
        """("on", body) and ("off", None), in the order they came."""
        self.dr_failovers: list[dict[str, Any]] = []
        self.dr_healthy_after: float | None = 0.0
        self._dr_asked_at: float | None = None
        self.error_rate = 0.0

    def dr_status_answer(self) -> dict[str, Any]:
        """What `GET /admin/disaster-recovery/status` answers now."""
        if not self.dr_failovers or self._dr_asked_at is None:
            return {"status": "idle", "active_region": "eu-west-1"}
        latest = self.dr_failovers[-1]
        region = latest.get("target_region") or "eu-west-1"
        after = self.dr_healthy_after
        if after is not None and time.monotonic() - self._dr_asked_at >= after:
            return {"status": "healthy", "active_region": region, "type": latest.get("type")}
        return {"status": "in_progress", "active_region": "eu-west-1", "type": latest.get("type")}

    def requests(self, path: str = "") -> list[GatewayRequest]:
        """The recorded requests whose path starts with `path`, oldest first."""
        with self._lock:
            return [r for r in self._requests if r.path.startswith(path)]

    def _script_for(self, method: str, path: str) -> Scripted | None:
        with self._lock:
            for scripted in self._scripted:
                if scripted.method == method and scripted.path == path and scripted.remaining:
                    scripted.remaining -= 1
                    return scripted
        return None

    def _build_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        @app.middleware("http")
        async def record_and_script(request: Request, call_next: Any) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in request.headers.items()}
            with fake._lock:
                fake._requests.append(
                    GatewayRequest(request.method, request.url.path, headers, body)
                )
            scripted = fake._script_for(request.method, request.url.path)
            if scripted is not None:
                await asyncio.sleep(scripted.delay_seconds)
                extra = {"Retry-After": scripted.retry_after} if scripted.retry_after else {}
                if scripted.html:
                    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
                    return HTMLResponse(page, scripted.status, headers=extra)
                error = {"error": f"scripted {scripted.status}"}
                return JSONResponse(error, scripted.status, headers=extra)
            if request.url.path.startswith("/admin/") and (
                headers.get("authorization") != f"Bearer {ADMIN_TOKEN}"
            ):
                return JSONResponse({"error": "invalid admin token"}, 401)
            response: Response = await call_next(request)
            return response

        @app.get("/health")
        async def health() -> dict[str, Any]:
            return {
                "status": "healthy",
                "maintenance": fake.maintenance is not None,
                "error_rate": fake.error_rate,
            }

        @app.get("/pos/health/{provider}")
        async def pos_health(provider: str) -> Response:
            if provider not in PROVIDERS:
                return JSONResponse({"error": f"unknown provider {provider}"}, 404)
            answer = fake.pos_health[provider] | {"endpoint": fake.active_endpoint[provider]}
            return JSONResponse(answer)

        @app.post("/admin/pos/failover")
        async def pos_failover(request: Request) -> Response:
            body = await request.json()
            provider = body.get("provider")
            if provider not in PROVIDERS or not body.get("reason"):
                return JSONResponse({"error": "provider and reason are required"}, 400)
            back = str(body["reason"]).startswith("failback")
            fake.active_endpoint[provider] = "primary" if back else "secondary"
            return JSONResponse(
                {"provider": provider, "active_endpoint": fake.active_endpoint[provider]}
            )

        @app.post("/admin/maintenance")
        async def maintenance_on(request: Request) -> dict[str, Any]:
            fake.maintenance = await request.json()
            fake.maintenance_log.append(("on", fake.maintenance))
            return {"maintenance": True, **fake.maintenance}

        @app.delete("/admin/maintenance")
        async def maintenance_off() -> Response:
            fake.maintenance = None
            fake.maintenance_log.append(("off", None))
            return Response(status_code=204)

        @app.post("/admin/disaster-recovery/failover")
        async def dr_failover(request: Request) -> dict[str, Any]:
            body = await request.json()
            if body.get("type") not in ("database", "regional") or not body.get("reason"):
                return JSONResponse({"error": "type and reason are required"}, 400)
            fake.dr_failovers.append(body)
            fake._dr_asked_at = time.monotonic()
            return JSONResponse({"accepted": True, "type": body["type"], "status": "in_progress"})

        @app.get("/admin/disaster-recovery/status")
        async def dr_status() -> dict[str, Any]:
            return fake.dr_status_answer()

        return app
