-- An allowlist entry an admin can switch off (PATCH /admin/tools/{id}) without removing
-- it: a disabled server keeps its discovered tools but is not offered to any turn.
ALTER TABLE tool_servers ADD COLUMN IF NOT EXISTS enabled BOOLEAN NOT NULL DEFAULT true;
