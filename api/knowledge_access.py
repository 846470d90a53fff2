"""The knowledge-base and document lookups every knowledge route starts with: what the
caller may read (through the ACL filter, ``core.policy.acl``) and what they may change
(``core.policy.documents.can_manage``). Anything else answers 404, or 403 for a
readable one the caller may not change."""

from __future__ import annotations

from api.errors import ApiError
from api.state import ApiResources
from core.errors import ErrorCode
from core.models.principal import Principal
from core.policy.acl import acl_filter
from core.policy.documents import can_manage
from infra.db.knowledge_repo import DocumentRecord, KnowledgeBaseRecord, personal_kb_id


async def personal_kb(resources: ApiResources, principal: Principal) -> KnowledgeBaseRecord:
    return await resources.knowledge_repo.ensure_personal_kb(
        principal.user_id, display_name=principal.display_name, email=principal.email
    )


async def readable_kb(resources: ApiResources, principal: Principal, kb_id: str) -> KnowledgeBaseRecord:
    if kb_id == personal_kb_id(principal.user_id):
        return await personal_kb(resources, principal)
    kbs = await resources.knowledge_repo.readable_kbs(acl_filter(principal))
    for kb in kbs:
        if kb.id == kb_id:
            return kb
    raise ApiError(ErrorCode.KNOWLEDGE_BASE_NOT_FOUND, "knowledge base not found")


async def writable_kb(resources: ApiResources, principal: Principal, kb_id: str) -> KnowledgeBaseRecord:
    kb = await readable_kb(resources, principal, kb_id)
    if not can_manage(principal, owner_type=kb.owner_type, owner_id=kb.owner_id):
        raise ApiError(ErrorCode.FORBIDDEN, "you may not add documents to this knowledge base")
    return kb


async def readable_document(
    resources: ApiResources, principal: Principal, kb_id: str, doc_id: str
) -> DocumentRecord:
    doc = await resources.knowledge_repo.readable_document(
        doc_id, acl_filter(principal, knowledge_base_ids=[kb_id])
    )
    if doc is None:
        raise ApiError(ErrorCode.DOCUMENT_NOT_FOUND, "document not found")
    return doc


def managed_document(principal: Principal, doc: DocumentRecord) -> DocumentRecord:
    if not can_manage(principal, owner_type=doc.owner_type, owner_id=doc.owner_id):
        raise ApiError(ErrorCode.FORBIDDEN, "only the document's owner may change it")
    return doc
