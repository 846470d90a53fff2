/**
 * Used by tests/sdk_ts/test_typescript_client.py against a running Keel (not a unit test):
 * replay a turn's events through turnEvents() and print one JSON line per event.
 *
 *   KEEL_URL=… KEEL_API_KEY=… node --import tsx test/live/replay.ts <session_id> <turn_id> [last_event_id]
 */
import { createKeelClient } from "../../src/index.js";

const [sessionId, turnId, lastEventId] = process.argv.slice(2);
if (!sessionId || !turnId) throw new Error("usage: replay.ts <session_id> <turn_id> [last_event_id]");
const keel = createKeelClient({ baseUrl: process.env.KEEL_URL ?? "", apiKey: process.env.KEEL_API_KEY });
for await (const ev of keel.turnEvents(sessionId, turnId, { lastEventId })) {
  const delta = ev.event === "message.delta" ? ev.data.delta : undefined;
  console.log(JSON.stringify({ event: ev.event, id: ev.id ?? null, delta }));
}
