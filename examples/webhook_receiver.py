"""A webhook receiver: verifies each delivery's signature and drops duplicates by event id.

    WEBHOOK_SECRET=whsec_... PORT=8090 python examples/webhook_receiver.py
"""

import os

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

hook = Webhook(os.environ["WEBHOOK_SECRET"])  # the secret `subscription add` printed
seen: set[str] = set()  # a real receiver keeps this in its database


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        event = hook.verify(body, dict(request.headers))  # signature, and a recent timestamp
    except WebhookVerificationError:
        return web.Response(status=400)
    if event["event_id"] not in seen:  # delivery is at least once: drop a duplicate
        seen.add(event["event_id"])
        print(event["type"], event["opportunity_id"], event["seq"], event["data"], flush=True)
    return web.Response(status=204)  # any 2xx: delivered; anything else: tried again


app = web.Application()
app.router.add_post("/hooks", receive)
web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8090")), print=None)
