-- The per-user in-flight limit counts a user's documents still processing (issue 9).
CREATE INDEX IF NOT EXISTS documents_processing_by_creator ON documents (created_by) WHERE status = 'processing';
