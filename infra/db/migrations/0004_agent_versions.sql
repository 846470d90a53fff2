-- Which agent definition (and revision) a session and each of its turns ran.
ALTER TABLE chat_sessions ADD COLUMN IF NOT EXISTS agent_version TEXT;
ALTER TABLE chat_turns ADD COLUMN IF NOT EXISTS agent TEXT;
ALTER TABLE chat_turns ADD COLUMN IF NOT EXISTS agent_version TEXT;
