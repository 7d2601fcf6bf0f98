"""The Temporal UI, in a real headless Chromium: operators find opportunities by stage and
see each one's summary and current details, decoded through the codec server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, async_playwright, expect
from playwright.async_api import Error as PlaywrightError
from temporalio.client import Client
from temporalio.worker import Worker

from runtime.codec import EncryptionCodec, Keyring, data_converter
from sales.registry import REGISTRY
from starter.client import OpportunitiesClient
from tests.support.helpers import (
    TEST_KEYS,
    eventually,
    setup_contact,
    setup_process,
    setup_references,
)
from tests.support.servers import Servers
from worker import build_worker

pytestmark = pytest.mark.usefixtures("verified")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def shots(tmp_path: Path) -> Path:
    """Where screenshots go: the test's folder, or with `UPDATE_SCREENSHOTS=1` the docs'
    images (docs/operate.md shows them)."""
    return DOCS_IMAGES if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path


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
    await setup_references(pool, uid)
    contact_id = await setup_contact(pool, uid, first_name=SECRET)  # no address: letters fail
    opportunities = OpportunitiesClient(sealed, task_queue)
    async with build_worker(sealed, pool, task_queue):
        for n in range(2):
            await opportunities.create(
                contact_id,
                opportunity_id=f"u-{uid}-{n}",
                process_id=process_id,
                name=f"Deal {n}",
                owner="ann",
                by="ui-tester",
                contact_name=f"{SECRET} Lovelace",  # as the CLI reads it from the read model
            )
        performed = await opportunities.perform_actions(f"u-{uid}-1", ["welcome-letter"])
        assert [a.outcome for a in performed.actions] == ["failed"]
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
                    "Linked activities (1):", "Introductory call: active",
                    "Failed actions (1):", "Letter welcome-letter failed",
                    "fix the contact (contact modify) and perform it again",
                    "Owner: ann", "Opened:", "by ui-tester"]  # fmt: skip

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
        await page.screenshot(path=str(shots(tmp_path) / "ui-workflow-page.png"))

        # The same command as from a service, by the UI's signal form, in plain JSON.
        await page.get_by_role("button", name="More Actions").click()
        await page.get_by_role("menuitem", name="Send a Signal").first.click()
        form = page.locator("dialog[open]")
        await form.get_by_test_id("signal-select-button").click()
        # each signal is listed with its description: the command's summary in the registry
        option = form.get_by_role("option", name=re.compile(r"^change_stage\b"))
        await expect(option).to_contain_text(REGISTRY["change_stage"].summary)
        await option.click()
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


async def test_operators_add_stage_owner_and_contact_columns_to_the_list(
    browser: Browser,
    servers: Servers,
    worker: Worker,
    client: Client,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
    tmp_path: Path,
) -> None:
    """What docs/operate.md describes, with the screenshots it shows: the list's column
    settings add the contract's search attributes as columns."""
    process_id = await setup_process(pool, uid, on_entry=False)
    contact_id = await setup_contact(pool, uid)
    for n, owner in enumerate(["ann", "bob"]):
        await opportunities.create(
            contact_id, opportunity_id=f"c-{uid}-{n}", process_id=process_id,
            name=f"Deal {n}", owner=owner,
        )  # fmt: skip
    await opportunities.change_stage(f"c-{uid}-1", "Proposal")

    async def indexed() -> bool:
        query = f'SalesProcess = "{process_id}" AND OpportunityStage = "Proposal"'
        return len([w async for w in client.list_workflows(query)]) == 1

    await eventually(indexed, seconds=15)
    page = await browser.new_page(viewport={"width": 1500, "height": 700})
    await page.goto(
        f"http://127.0.0.1:{servers.ui_port}/namespaces/default/workflows"
        f'?query=SalesProcess="{process_id}"'
    )
    await page.get_by_role("link", name=f"opportunity-c-{uid}-1").wait_for(timeout=30_000)
    await page.get_by_test_id("workflows-summary-table-configuration-button").click()
    for attribute in ("OpportunityStage", "OpportunityOwner", "ContactId"):
        await page.get_by_role("button", name=f"Add {attribute} column").click()
    for column in ("Run ID", "Type", "End"):  # room for them on the screen
        await page.get_by_role("button", name=f"Remove {column} column").click()
    await page.screenshot(path=str(shots(tmp_path) / "ui-configure-columns.png"))
    await page.get_by_role("button", name="Close Workflows Table configuration").click()
    await page.get_by_text("Configure Workflows Table").wait_for(state="hidden")
    for attribute in ("OpportunityStage", "OpportunityOwner", "ContactId"):
        header = page.get_by_test_id(f"workflows-summary-table-header-cell-{attribute}")
        await header.wait_for(timeout=10_000)
    row = page.get_by_test_id("workflows-summary-configurable-table-row").filter(
        has_text=f"opportunity-c-{uid}-1"
    )
    for shown in ("Proposal", "bob", contact_id):
        await row.get_by_text(shown, exact=True).first.wait_for(timeout=10_000)
        assert await row.get_by_text(shown, exact=True).first.is_visible()
    await page.screenshot(path=str(shots(tmp_path) / "ui-list-with-columns.png"))
