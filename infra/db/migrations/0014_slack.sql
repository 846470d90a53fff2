-- Slack (docs/slack.md). A thread is one Keel session per person; /keel ask keeps a
-- current session per person and channel that /keel new replaces.
CREATE TABLE IF NOT EXISTS slack_command_sessions (
    team_id       text NOT NULL,
    channel_id    text NOT NULL,
    slack_user_id text NOT NULL,
    session_id    text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, channel_id, slack_user_id)
);

-- A thread the bot started for /keel ask continues that command session.
CREATE TABLE IF NOT EXISTS slack_threads (
    team_id    text NOT NULL,
    channel_id text NOT NULL,
    thread_ts  text NOT NULL,
    user_id    text NOT NULL,
    session_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, channel_id, thread_ts, user_id)
);
