"""The user directory's entries: who Keel knows, found by id or by email.

An entry comes only from a real sign-in (``dev``, ``oidc``, ``session``) or from
EntraID itself through Microsoft Graph (``graph``); see docs/identity.md#user-directory.
Integrations that act for a person known by email (the Slack bot) turn an entry into
a :class:`Principal` with :meth:`DirectoryUser.principal`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models.principal import Principal

DirectorySource = Literal["dev", "oidc", "session", "graph"]
#: The auth methods whose principals are people signing in (recorded in the directory).
SIGN_IN_METHODS: frozenset[str] = frozenset({"dev", "oidc", "session"})
MAX_EMAIL_CHARS = 320


def normalize_email(email: str | None) -> str | None:
    """The directory's look-up key: trimmed and lower-cased; ``None`` for an empty or
    over-long value or one with control characters."""
    if email is None:
        return None
    value = email.strip()
    if not value or len(value) > MAX_EMAIL_CHARS or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    return value.lower()


class DirectoryUser(BaseModel):
    """One person in the directory. ``user_id`` is the identity provider's object id
    (EntraID ``oid``; the same id a sign-in of this person carries)."""

    model_config = ConfigDict(frozen=True)

    user_id: str = Field(min_length=1, max_length=256)
    email: str | None = None
    display_name: str | None = None
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    source: DirectorySource
    #: ``False``: the account is disabled; integrations refuse it.
    active: bool = True
    #: The last sign-in Keel recorded (``None`` for an entry that only came from Graph).
    last_sign_in_at: datetime | None = None

    def principal(self, *, auth_method: str = "slack") -> Principal:
        """This person as a caller, with the groups and roles the directory holds.

        Refuses an inactive entry (``ValueError``): a disabled account acts for nobody.
        """
        if not self.active:
            raise ValueError(f"directory user {self.user_id} is not active")
        return Principal(
            user_id=self.user_id,
            email=self.email,
            display_name=self.display_name,
            groups=self.groups,
            roles=self.roles,
            auth_method=auth_method,
        )
