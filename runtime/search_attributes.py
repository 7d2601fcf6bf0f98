"""The contract's search attributes: operators filter opportunities by them in the Temporal UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

OPPORTUNITY_STAGE = SearchAttributeKey.for_keyword("OpportunityStage")
SALES_PROCESS = SearchAttributeKey.for_keyword("SalesProcess")
OPPORTUNITY_STATUS = SearchAttributeKey.for_keyword("OpportunityStatus")
CONTACT_ID = SearchAttributeKey.for_keyword("ContactId")
OPPORTUNITY_OWNER = SearchAttributeKey.for_keyword("OpportunityOwner")
OPEN_ACTIONS = SearchAttributeKey.for_int("OpenActions")

ALL: list[SearchAttributeKey] = [
    OPPORTUNITY_STAGE,
    SALES_PROCESS,
    OPPORTUNITY_STATUS,
    CONTACT_ID,
    OPPORTUNITY_OWNER,
    OPEN_ACTIONS,
]


def dev_server_flags() -> list[str]:
    """`--search-attribute` flags registering them on `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int"}
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
