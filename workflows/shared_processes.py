"""One copy of each process version for all the opportunities a worker keeps in memory.

Each opportunity's state carries its process definition (about 9 KiB for the example
process), parsed anew at every opening and continue-as-new, and each of its action states
carries its action's definition. Versions are immutable (a changed definition is a new
version), definitions are frozen, and the rules never change one in place (`modify_action`
replaces an action's definition whole), so replacing equal objects by one shared copy changes
no behaviour; it only lowers the memory per cached opportunity.
"""

from __future__ import annotations

from collections import OrderedDict

from sales.opportunity import Opportunity
from sales.process import Action, ProcessDefinition

ProcessKey = tuple[str, int]
Copy = tuple[ProcessDefinition, dict[tuple[str, str], Action]]
"""A shared process and its action definitions by (stage, action id)."""


class SharedProcesses:
    """The shared copies of the `size` process versions used most recently."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._copies: OrderedDict[ProcessKey, Copy] = OrderedDict()

    def __len__(self) -> int:
        return len(self._copies)

    def share(self, state: Opportunity) -> Opportunity:
        """The state with its process definition, and every action definition equal to the
        process's, replaced by the shared copies (in place; an action an operator modified
        keeps its own). A state whose definition differs from the shared copy of its version
        keeps its own too."""
        key = (state.process_id, state.process_version)
        shared = self._copies.get(key)
        if shared is None:
            actions = {(s.name, a.action_id): a for s in state.process.stages for a in s.actions}
            shared = (state.process, actions)
            self._copies[key] = shared
            if len(self._copies) > self.size:
                self._copies.popitem(last=False)
        else:
            self._copies.move_to_end(key)
        process, actions = shared
        if process is not state.process:
            if process != state.process:
                return state
            state.process = process
        for stage in state.stages:
            for action in stage.actions:
                same = actions.get((stage.name, action.definition.action_id))
                if same is not None and same is not action.definition and same == action.definition:
                    action.definition = same
        return state


WORKER_PROCESSES = SharedProcesses()
"""The copies of this worker process (workflow code runs outside the SDK's sandbox, so every
opportunity of the worker shares them)."""
