"""The patch register: every patch id the workflow code branches on, why, and the recorded
history that replays its old branch.

Empty before the first release: nothing deployed predates today's code, so a change is made
directly and the histories are recorded again. After the release, a change that running
opportunities could not replay adds an entry here (see docs/versioning.md);
`tests/unit/test_patches.py` fails when the code uses a patch id that is not registered, or
a registered id has no recorded history.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    id: str
    reason: str
    history: str
    """The file under tests/histories/ recorded before the patch (its old branch)."""


PATCHES: tuple[Patch, ...] = ()
