-- A turn stopped by POST /sessions/{id}/turns/{turn_id}/cancel ends 'cancelled'.
ALTER TABLE chat_turns DROP CONSTRAINT IF EXISTS chat_turns_status_check;
ALTER TABLE chat_turns ADD CONSTRAINT chat_turns_status_check
    CHECK (status IN ('running', 'completed', 'awaiting_approval', 'failed', 'cancelled'));
