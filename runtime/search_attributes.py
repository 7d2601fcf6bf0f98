"""The contract's search attributes: operators filter opportunities by them in the Temporal UI."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

OPPORTUNITY_STAGE = SearchAttributeKey.for_keyword("OpportunityStage")
SALES_PROCESS = SearchAttributeKey.for_keyword("SalesProcess")
OPPORTUNITY_STATUS = SearchAttributeKey.for_keyword("OpportunityStatus")
CONTACT_ID = SearchAttributeKey.for_keyword("ContactId")
OPPORTUNITY_OWNER = SearchAttributeKey.for_keyword("OpportunityOwner")
OPEN_ACTIONS = SearchAttributeKey.for_int("OpenActions")
FAILED_ACTIONS = SearchAttributeKey.for_int("FailedActions")
OPPORTUNITY_AMOUNT = SearchAttributeKey.for_float("OpportunityAmount")
"""In the opportunity's own currency (filter with `SalesProcess` or the currency in mind)."""
EXPECTED_CLOSE_DATE = SearchAttributeKey.for_datetime("ExpectedCloseDate")
"""Midnight UTC of the expected close date."""
OPPORTUNITY_IDLE = SearchAttributeKey.for_bool("OpportunityIdle")

ALL: list[SearchAttributeKey] = [
    OPPORTUNITY_STAGE,
    SALES_PROCESS,
    OPPORTUNITY_STATUS,
    CONTACT_ID,
    OPPORTUNITY_OWNER,
    OPEN_ACTIONS,
    FAILED_ACTIONS,
    OPPORTUNITY_AMOUNT,
    EXPECTED_CLOSE_DATE,
    OPPORTUNITY_IDLE,
]


def dev_server_flags() -> list[str]:
    """`--search-attribute` flags registering them on `temporal server start-dev`."""
    kinds = {
        "KEYWORD": "Keyword", "INT": "Int", "DOUBLE": "Double", "DATETIME": "Datetime",
        "BOOL": "Bool",
    }  # fmt: skip
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags


async def register_missing(client: Client) -> list[str]:
    """Register those of `ALL` the namespace lacks (a workflow that upserts an unregistered
    one fails its task); the names registered, as `Name (Type)`."""
    namespace = client.namespace
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(listed.custom_attributes) | set(listed.system_attributes)
    missing = {key.name: key.indexed_value_type for key in ALL if key.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={
                    name: IndexedValueType.ValueType(int(kind)) for name, kind in missing.items()
                },
            )
        )
    return [f"{name} ({kind.name.title()})" for name, kind in missing.items()]
