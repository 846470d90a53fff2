"""Development tokens: HS256 JWTs signed with ``KEEL_SECRET_KEY``.

Only issued and accepted when ``KEEL_AUTH_MODE=dev`` (which settings refuse in
production). Verification pins the algorithm, issuer and audience, so a token
with ``alg: none`` or another algorithm is rejected.
"""

from __future__ import annotations

import time
import uuid

import jwt

from core.errors import ErrorCode, KeelError
from core.models.principal import Principal

DEV_ISSUER = "keel-dev"
DEV_AUDIENCE = "keel-api"
_ALGORITHM = "HS256"


def issue_dev_token(principal: Principal, *, secret: str, ttl_s: int, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": principal.user_id,
        "oid": principal.user_id,
        "email": principal.email,
        "name": principal.display_name,
        "groups": list(principal.groups),
        "roles": list(principal.roles),
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify_dev_token(token: str, *, secret: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=DEV_AUDIENCE,
            issuer=DEV_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise KeelError(ErrorCode.TOKEN_EXPIRED, "the access token has expired") from exc
    except jwt.PyJWTError as exc:
        raise KeelError(ErrorCode.INVALID_TOKEN, "the access token is not valid") from exc
    return Principal(
        user_id=str(claims["sub"]),
        email=claims.get("email"),
        display_name=claims.get("name"),
        groups=tuple(str(g) for g in claims.get("groups") or ()),
        roles=tuple(str(r) for r in claims.get("roles") or ()),
        auth_method="dev",
    )
