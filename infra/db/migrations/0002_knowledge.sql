-- Knowledge bases, documents, their chunks' text, failed operations (DLQ).
-- Principals are prefixed strings: user:<id>, group:<id>, dept:<id>, org.
CREATE TABLE IF NOT EXISTS knowledge_bases (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner_type  TEXT NOT NULL CHECK (owner_type IN ('org', 'department', 'user')),
    owner_id    TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS knowledge_bases_one_personal ON knowledge_bases (owner_id) WHERE owner_type = 'user';

CREATE TABLE IF NOT EXISTS documents (
    id            TEXT PRIMARY KEY,
    kb_id         TEXT NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    filename      TEXT NOT NULL,
    content_type  TEXT,
    doc_type      TEXT,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    blob_key      TEXT NOT NULL,
    source        TEXT NOT NULL DEFAULT 'upload' CHECK (source IN ('manual', 'upload', 'sync')),
    owner_type    TEXT NOT NULL CHECK (owner_type IN ('org', 'department', 'user')),
    owner_id      TEXT NOT NULL,
    visibility    TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'shared')),
    shared_with   TEXT[] NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed', 'deleting')),
    error_code    TEXT,
    error_message TEXT,
    chunk_count   INTEGER NOT NULL DEFAULT 0,
    page_count    INTEGER NOT NULL DEFAULT 0,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS documents_kb ON documents (kb_id, created_at DESC);
CREATE INDEX IF NOT EXISTS documents_shared_with ON documents USING GIN (shared_with);

CREATE TABLE IF NOT EXISTS document_chunks (
    doc_id      TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL,
    text        TEXT NOT NULL,
    page        INTEGER,
    strategy    TEXT NOT NULL,
    heading     TEXT,
    PRIMARY KEY (doc_id, chunk_index)
);

CREATE TABLE IF NOT EXISTS ingestion_batches (
    id          TEXT PRIMARY KEY,
    kb_id       TEXT NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    document_ids TEXT[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS failed_operations (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    error_code    TEXT NOT NULL,
    error_message TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'retried', 'resolved')),
    retry_count   INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS failed_operations_open ON failed_operations (kind, resource_id) WHERE status = 'open';
