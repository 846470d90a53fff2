"""Slack, the primary channel: slack-bolt handlers that verify, acknowledge and start a
workflow (``handlers``), the HTTP endpoints and Socket Mode that feed them (``routes``,
``socket_mode``), and the activities that hand a Slack turn or approval to the chat
workflow through the same gateway as the REST API (``delivery``). docs/slack.md."""
