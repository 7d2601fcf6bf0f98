"""A real webhook receiver (aiohttp) for the tests: it verifies each delivery's signature with
the `standardwebhooks` package (code the project did not write), records what it got, and can
be down (connection refused), answer 500, or refuse one opportunity's events."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Literal

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from runtime import embedded

Mode = Literal["ok", "fail"]


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = embedded.free_port()
        self.mode: Mode = "ok"
        self.failing: set[str] = set()
        """Opportunities whose events are answered 500."""
        self.got: list[dict[str, Any]] = []
        """Every verified delivery, in arrival order (duplicates too)."""
        self.bad_signatures = 0
        self.refused = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Down: connections are refused until `start` again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        if request.headers["webhook-id"] != payload["event_id"]:
            self.bad_signatures += 1
            return web.Response(status=400, text="webhook-id is not the event id")
        if self.mode == "fail" or payload["opportunity_id"] in self.failing:
            self.refused += 1
            return web.Response(status=500, text="x" * 10_000)  # more than is ever read
        self.got.append(payload)
        return web.Response(status=204)

    def unique(self) -> dict[str, dict[str, Any]]:
        """The deliveries by event id (a duplicate must be the same event)."""
        seen: dict[str, dict[str, Any]] = {}
        for payload in self.got:
            if payload["event_id"] in seen:
                assert json.dumps(seen[payload["event_id"]], sort_keys=True) == json.dumps(
                    payload, sort_keys=True
                ), f"event {payload['event_id']} delivered twice with different content"
            seen.setdefault(payload["event_id"], payload)
        return seen

    def by_opportunity(self) -> dict[str, list[int]]:
        """Each opportunity's event numbers in the order they first arrived."""
        order: dict[str, list[int]] = defaultdict(list)
        for event in self.unique().values():
            order[event["opportunity_id"]].append(event["seq"])
        return dict(order)
