"""The activity that invites a contact to an event (its rows: `store.events`)."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities.failures import BadData, classified
from sales.effects import EffectOutcome, InviteToEvent
from store import StoreError, events


class EventActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="invite_to_event")
    @classified("invite_to_event")
    async def invite_to_event(self, effect: InviteToEvent) -> EffectOutcome:
        try:
            invited = await events.invite(self.pool, effect)
        except StoreError as error:
            raise BadData(str(error), "unknown_event") from None
        if invited:
            return EffectOutcome(
                status="invited", message=f"contact invited to event {effect.event_id}"
            )
        return EffectOutcome(
            status="already_invited",
            message=f"the contact is already on the invitee list of event {effect.event_id}",
        )

    def all(self) -> list:
        return [self.invite_to_event]
