-- The user directory: who Keel knows, by id and by email (the Slack bot maps a Slack
-- user's verified email to the Keel user). Filled only by a real sign-in (dev, oidc,
-- session) or by EntraID itself through Microsoft Graph (graph); never provisioned
-- otherwise. See docs/identity.md#user-directory.
CREATE TABLE IF NOT EXISTS user_directory (
    user_id           TEXT PRIMARY KEY,
    email             TEXT,
    -- the email lower-cased (by Keel, in Python): the look-up key, one user per address
    email_normalized  TEXT,
    display_name      TEXT,
    groups            TEXT[] NOT NULL DEFAULT '{}',
    roles             TEXT[] NOT NULL DEFAULT '{}',
    source            TEXT NOT NULL CHECK (source IN ('dev', 'oidc', 'session', 'graph')),
    active            BOOLEAN NOT NULL DEFAULT true,
    last_sign_in_at   TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS user_directory_email
    ON user_directory (email_normalized) WHERE email_normalized IS NOT NULL;
-- in_group(): active users whose groups contain a group id (approvers)
CREATE INDEX IF NOT EXISTS user_directory_groups ON user_directory USING GIN (groups);
