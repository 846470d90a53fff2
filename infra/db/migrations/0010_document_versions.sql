-- Issue 10: one document per file in a knowledge base.
-- An upload of bytes already in the knowledge base answers that document; one under a
-- filename already there replaces the bytes as the document's next version (same id,
-- same shares). The upload path looks both up under a per-knowledge-base advisory lock.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS documents_kb_sha256 ON documents (kb_id, sha256) WHERE status <> 'deleting';
CREATE INDEX IF NOT EXISTS documents_kb_filename ON documents (kb_id, filename) WHERE status <> 'deleting';

-- Whose personal knowledge base this is, as the owner's sign-in last named them, so a
-- reader of a shared document sees "Alice's personal", not a second "Personal".
ALTER TABLE knowledge_bases ADD COLUMN IF NOT EXISTS owner_display_name TEXT;
ALTER TABLE knowledge_bases ADD COLUMN IF NOT EXISTS owner_email TEXT;
