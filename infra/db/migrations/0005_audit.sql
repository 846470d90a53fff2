-- The audit trail: an append-only, hash-chained table (docs/audit.md).
--
-- * ``seq`` comes from the one-row chain head, taken with SELECT ... FOR UPDATE in
--   the writer's transaction: writes serialise there, and a rolled-back write leaves
--   no gap (no sequence is involved).
-- * ``hash`` = HMAC-SHA256(key, canonical JSON of the row, ``prev_hash`` included),
--   computed by infra/audit/chain.py; ``keel audit verify`` recomputes it.
-- * Triggers refuse UPDATE and TRUNCATE, and DELETE unless the transaction set
--   ``SET LOCAL keel.audit_retention = 'on'`` (only the retention activity does);
--   every such delete leaves a tombstone (seq, hashes, event, time: no personal
--   data) so the chain can still be verified across purged rows.

CREATE TABLE IF NOT EXISTS audit_chain_head (
    id        BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    last_seq  BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_chain_head (id, last_seq, last_hash)
VALUES (true, 0, repeat('0', 64))
ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS audit_events (
    seq           BIGINT PRIMARY KEY CHECK (seq > 0),
    id            TEXT NOT NULL UNIQUE,
    occurred_at   TIMESTAMPTZ NOT NULL,
    event         TEXT NOT NULL,
    user_id       TEXT,
    session_id    TEXT,
    trace_id      TEXT,
    request_id    TEXT,
    outcome       TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    details       JSONB NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key    TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_dedupe ON audit_events (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_user ON audit_events (user_id, seq DESC);
CREATE INDEX IF NOT EXISTS audit_events_event ON audit_events (event, seq DESC);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (occurred_at);

CREATE TABLE IF NOT EXISTS audit_tombstones (
    seq         BIGINT PRIMARY KEY,
    event       TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    purge_run   TEXT,
    purged_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_tombstones_run ON audit_tombstones (purge_run);

-- Per-sink export position (webhook, syslog): advanced only after the sink accepted.
CREATE TABLE IF NOT EXISTS audit_export_cursors (
    sink       TEXT PRIMARY KEY,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ------------------------------------------------------------ append-only rules
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the audit trail is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE OR REPLACE FUNCTION audit_check_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head audit_chain_head%ROWTYPE;
BEGIN
    SELECT * INTO head FROM audit_chain_head WHERE id;
    IF NEW.seq <> head.last_seq + 1 OR NEW.prev_hash <> head.last_hash THEN
        RAISE EXCEPTION 'audit row % does not extend the chain head (seq %)', NEW.seq, head.last_seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION audit_check_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.last_seq <> OLD.last_seq + 1 THEN
        RAISE EXCEPTION 'the audit chain head only moves forward by one'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION audit_retention_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('keel.audit_retention', true), '') <> 'on' THEN
        RAISE EXCEPTION 'DELETE on audit_events is reserved to the retention job'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO audit_tombstones (seq, event, occurred_at, prev_hash, hash, purge_run)
    VALUES (OLD.seq, OLD.event, OLD.occurred_at, OLD.prev_hash, OLD.hash,
            nullif(current_setting('keel.audit_purge_run', true), ''));
    RETURN OLD;
END;
$$;

DROP TRIGGER IF EXISTS audit_events_no_update ON audit_events;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
DROP TRIGGER IF EXISTS audit_events_retention_delete ON audit_events;
CREATE TRIGGER audit_events_retention_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_retention_delete();
DROP TRIGGER IF EXISTS audit_events_append ON audit_events;
CREATE TRIGGER audit_events_append BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_check_append();

DROP TRIGGER IF EXISTS audit_tombstones_no_change ON audit_tombstones;
CREATE TRIGGER audit_tombstones_no_change BEFORE UPDATE OR DELETE ON audit_tombstones
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
DROP TRIGGER IF EXISTS audit_tombstones_no_truncate ON audit_tombstones;
CREATE TRIGGER audit_tombstones_no_truncate BEFORE TRUNCATE ON audit_tombstones
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

DROP TRIGGER IF EXISTS audit_chain_head_forward ON audit_chain_head;
CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_check_head();
DROP TRIGGER IF EXISTS audit_chain_head_no_delete ON audit_chain_head;
CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
DROP TRIGGER IF EXISTS audit_chain_head_no_truncate ON audit_chain_head;
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
