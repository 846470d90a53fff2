-- Chat sessions, turns and the transcript. Writes are idempotent: every row
-- has a natural key that a retried activity re-uses (ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS chat_sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    title         TEXT NOT NULL DEFAULT '',
    agent         TEXT NOT NULL DEFAULT 'default',
    turn_count    INTEGER NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS chat_sessions_user_updated ON chat_sessions (user_id, updated_at DESC);

CREATE TABLE IF NOT EXISTS chat_turns (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('running', 'completed', 'awaiting_approval', 'failed')),
    model             TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    error_code        TEXT,
    error_message     TEXT,
    result            JSONB,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at      TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS chat_turns_session ON chat_turns (session_id, created_at);

CREATE TABLE IF NOT EXISTS chat_messages (
    id          BIGSERIAL PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    turn_id     TEXT NOT NULL REFERENCES chat_turns(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content     TEXT NOT NULL,
    metadata    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (turn_id, seq)
);
CREATE INDEX IF NOT EXISTS chat_messages_session ON chat_messages (session_id, id);
