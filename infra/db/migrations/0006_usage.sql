-- Token budgets, reservations and usage (docs/budgets.md).
-- Postgres is the source of truth: a reservation and a settlement each run in one
-- transaction holding the user's advisory lock (pg_advisory_xact_lock(hashtext(...))).

-- Per-user overrides of the default budgets (no row: the settings' defaults;
-- a NULL column: unlimited for that period).
CREATE TABLE IF NOT EXISTS budgets (
    user_id         TEXT PRIMARY KEY,
    daily_tokens    BIGINT CHECK (daily_tokens IS NULL OR daily_tokens > 0),
    monthly_tokens  BIGINT CHECK (monthly_tokens IS NULL OR monthly_tokens > 0),
    updated_by      TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Tokens held for model calls in flight; they count against every period until
-- settled or until they expire (a call that never settles stops counting).
CREATE TABLE IF NOT EXISTS budget_reservations (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL,
    tokens               BIGINT NOT NULL CHECK (tokens >= 0),
    prompt_tokens_bound  BIGINT NOT NULL DEFAULT 0,
    output_tokens        BIGINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_reservations_user ON budget_reservations (user_id, expires_at);

-- One row per settled model call; the id is the reservation id (settling twice records once).
CREATE TABLE IF NOT EXISTS usage_records (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    session_id         TEXT NOT NULL,
    turn_id            TEXT NOT NULL,
    model              TEXT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cost               NUMERIC(20, 8) NOT NULL DEFAULT 0,
    currency           TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS usage_records_user ON usage_records (user_id, created_at DESC);

-- Daily rollup, updated in the same transaction as each usage record: a budget
-- check sums at most a month of rows per model.
CREATE TABLE IF NOT EXISTS usage_daily (
    user_id            TEXT NOT NULL,
    day                DATE NOT NULL,
    model              TEXT NOT NULL,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    cost               NUMERIC(20, 8) NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, model)
);
CREATE INDEX IF NOT EXISTS usage_daily_day ON usage_daily (day);
