-- Tool isolation (issue 9): which tools have side effects, the documents a tool call
-- was proposed after reading, who (which API key) asked, and the full arguments of
-- calls whose secrets are masked everywhere else (loaded only by the tool call).
ALTER TABLE tool_servers ADD COLUMN IF NOT EXISTS side_effects BOOLEAN NOT NULL DEFAULT true;

ALTER TABLE tool_approvals ADD COLUMN IF NOT EXISTS context_documents JSONB NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE tool_approvals ADD COLUMN IF NOT EXISTS reason TEXT;
ALTER TABLE tool_approvals ADD COLUMN IF NOT EXISTS requester_api_key_id TEXT;

ALTER TABLE tool_invocations ADD COLUMN IF NOT EXISTS context_documents JSONB NOT NULL DEFAULT '[]'::jsonb;

-- Keyed by "<session>:<turn>:<step>:<call id>" (ToolCallRequest.arguments_ref); a row is
-- deleted once its call completed, was refused, denied or expired, or its session deleted.
CREATE TABLE IF NOT EXISTS tool_call_arguments (
    ref         TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    arguments   JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tool_call_arguments_session ON tool_call_arguments (session_id);
