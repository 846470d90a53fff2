"""EntraID / OIDC access-token verification.

TEMPORARY interface stub (being replaced by the JWKS-backed verifier).
"""

from __future__ import annotations

from core.errors import ErrorCode, KeelError
from core.models.principal import Principal
from infra.settings import Settings


class OidcVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def verify(self, token: str) -> Principal:
        raise KeelError(ErrorCode.INVALID_TOKEN, "the access token is not valid")

    async def aclose(self) -> None:
        return None
