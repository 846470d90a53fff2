"""Typed search-attribute keys an operator filters on in the Temporal UI."""

from __future__ import annotations

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from core import names

USER_ID = SearchAttributeKey.for_keyword(names.SEARCH_ATTR_USER_ID)
SESSION_ID = SearchAttributeKey.for_keyword(names.SEARCH_ATTR_SESSION_ID)
KIND = SearchAttributeKey.for_keyword(names.SEARCH_ATTR_KIND)


def for_chat(*, user_id: str, session_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(USER_ID, user_id),
            SearchAttributePair(SESSION_ID, session_id),
            SearchAttributePair(KIND, names.KIND_CHAT),
        ]
    )


def for_kind(*, user_id: str, kind: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(USER_ID, user_id), SearchAttributePair(KIND, kind)])


def updates_for_kind(*, user_id: str, kind: str) -> list[SearchAttributeUpdate[str]]:
    """For a workflow that learns whose it is only after it started (the Slack ones)."""
    return [USER_ID.value_set(user_id), KIND.value_set(kind)]
