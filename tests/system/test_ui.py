"""The Temporal UI, in a real headless Chromium: operators find opportunities by stage and
see each one's summary and current details, decoded through the codec server."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, async_playwright
from playwright.async_api import Error as PlaywrightError
from temporalio.client import Client

from runtime.codec import EncryptionCodec, Keyring, data_converter
from starter.client import OpportunitiesClient
from tests.support.helpers import TEST_KEYS, eventually, setup_contact, setup_process
from tests.support.servers import Servers
from worker import build_worker

pytestmark = pytest.mark.usefixtures("verified")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SECRET = "Philippa-Quaintance"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert await asyncio.to_thread(os.path.exists, CHROMIUM), (
        f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium), "
        "or set CHROMIUM to its path"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        await browser.close()


async def test_operators_filter_by_stage_and_read_summary_and_details(
    browser: Browser,
    servers: Servers,
    pool: asyncpg.Pool,
    task_queue: str,
    uid: str,
    tmp_path: Path,
) -> None:
    sealed = await Client.connect(
        servers.temporal_address,
        data_converter=data_converter(EncryptionCodec(Keyring.parse(TEST_KEYS))),
    )
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid, first_name=SECRET)
    opportunities = OpportunitiesClient(sealed, task_queue)
    async with build_worker(sealed, pool, task_queue):
        for n in range(2):
            await opportunities.create(
                contact_id,
                opportunity_id=f"u-{uid}-{n}",
                process_id=process_id,
                name=f"Deal {n}",
                contact_name=f"{SECRET} Lovelace",  # as the CLI reads it from the read model
            )
        await opportunities.change_stage(f"u-{uid}-1", "Proposal")

        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        query = f'OpportunityStage="Proposal" AND SalesProcess="{process_id}"'
        await page.goto(
            f"http://127.0.0.1:{servers.ui_port}/namespaces/default/workflows?query={query}"
        )
        link = page.get_by_role("link", name=f"opportunity-u-{uid}-1")
        await link.wait_for(timeout=30_000)
        assert await page.get_by_role("link", name=f"opportunity-u-{uid}-0").count() == 0
        await page.screenshot(path=str(tmp_path / "filtered-by-stage.png"), full_page=True)

        await link.click()
        await page.get_by_text("User Metadata", exact=True).click()
        summary = f"{SECRET} Lovelace · {process_id} · Deal 1"

        expected = [summary, "Stage: Proposal", "Open actions (2):", "Review the proposal",
                    "Linked activities (1):", "Introductory call: active"]  # fmt: skip

        async def rendered() -> str | None:
            """The UI renders summary and details (markdown) in frames of their own; the
            summary is decoded by the codec server."""
            texts = []
            for frame in page.frames:
                with contextlib.suppress(PlaywrightError):
                    texts.append(await frame.inner_text("body"))
            text = "\n".join(texts)
            return text if all(shown in text for shown in expected) else None

        try:
            await eventually(rendered, seconds=30)
        except AssertionError:
            await page.screenshot(path=str(tmp_path / "details-missing.png"), full_page=True)
            raise
        await page.screenshot(path=str(tmp_path / "summary-and-details.png"), full_page=True)

        # The same command as from a service, by the UI's signal form, in plain JSON.
        await page.get_by_role("button", name="More Actions").click()
        await page.get_by_role("menuitem", name="Send a Signal").first.click()
        form = page.locator("dialog[open]")
        await form.get_by_test_id("signal-select-button").click()
        await form.get_by_role("option", name="change_stage", exact=True).click()
        await form.locator(".cm-content").click()
        await page.keyboard.insert_text('{"stage": "Needs analysis", "by": "ui-operator"}')
        await page.screenshot(path=str(tmp_path / "signal-form.png"), full_page=True)
        await form.get_by_role("button", name="Submit").click()

        async def moved() -> bool:
            state = await opportunities.state(f"u-{uid}-1")
            return state.current_stage == "Needs analysis"

        await eventually(moved)
        history = await opportunities.history(f"u-{uid}-1")
        assert (history[-1].to_stage, history[-1].by) == ("Needs analysis", "ui-operator")
