"""The authenticated caller, computed once per request or turn."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ORG_PRINCIPAL = "org"


def user_principal(user_id: str) -> str:
    return f"user:{user_id}"


def group_principal(group_id: str) -> str:
    return f"group:{group_id}"


class Principal(BaseModel):
    """Who is calling. ``user_id`` is the identity provider's stable object id."""

    model_config = ConfigDict(frozen=True)

    user_id: str = Field(min_length=1, max_length=256)
    email: str | None = None
    display_name: str | None = None
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    #: ``dev`` | ``oidc`` (a person's EntraID token) | ``service_principal`` (client credentials)
    #: | ``api_key`` | ``session`` (web sign-in cookie) | ``slack`` (a Slack user acting as the
    #: Keel user with the same verified email, from the user directory)
    auth_method: str = "dev"
    #: An EntraID guest (B2B) account, by its token's ``acct`` / ``idp`` / ``#EXT#`` signals.
    #: Guests may call the API, but are not recorded in the user directory.
    guest: bool = False
    #: An API key's scopes (permission names); ``None`` means all the roles grant.
    scopes: tuple[str, ...] | None = None
    api_key_id: str | None = None

    @property
    def principal_ids(self) -> frozenset[str]:
        """Prefixed principal strings (``user:…``, ``group:…``, ``org``) for ACL checks."""
        return frozenset(
            {user_principal(self.user_id), ORG_PRINCIPAL, *(group_principal(g) for g in self.groups)}
        )
