-- Tool allowlist (MCP servers and built-ins), approvals, and the invocation log
-- (one row per idempotency key: a retry after a crash finds the completed call).
CREATE TABLE IF NOT EXISTS tool_servers (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    transport         TEXT NOT NULL CHECK (transport IN ('stdio', 'http', 'builtin')),
    command           TEXT,
    args              JSONB NOT NULL DEFAULT '[]'::jsonb,
    env               JSONB NOT NULL DEFAULT '{}'::jsonb,
    url               TEXT,
    headers_secret    TEXT,
    enabled_tools     TEXT[],
    requires_approval BOOLEAN NOT NULL DEFAULT false,
    timeout_s         INTEGER NOT NULL DEFAULT 30,
    max_retries       INTEGER NOT NULL DEFAULT 3,
    allowed_groups    TEXT[] NOT NULL DEFAULT '{}',
    approver_group    TEXT,
    status            TEXT NOT NULL DEFAULT 'discovering' CHECK (status IN ('discovering', 'ready', 'failed')),
    discovered        JSONB NOT NULL DEFAULT '[]'::jsonb,
    error             TEXT,
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at        TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS tool_servers_name ON tool_servers (name) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS tool_approvals (
    id             TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL,
    turn_id        TEXT NOT NULL,
    requester      TEXT NOT NULL,
    tool           TEXT NOT NULL,
    arguments      JSONB NOT NULL,
    approver_group TEXT,
    status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    decided_by     TEXT,
    comment        TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    decided_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS tool_approvals_pending ON tool_approvals (status, requester);

CREATE TABLE IF NOT EXISTS tool_invocations (
    idempotency_key TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL,
    turn_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    tool            TEXT NOT NULL,
    arguments       JSONB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'refused')),
    result          TEXT,
    latency_ms      INTEGER,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS tool_invocations_user ON tool_invocations (user_id, created_at DESC);
