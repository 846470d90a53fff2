/**
 * Chat with Keel from TypeScript: stream one answer to stdout.
 *
 *   KEEL_URL=http://127.0.0.1:8000 KEEL_API_KEY=keel_… npm run example -- "What is Keel?"
 *
 * KEEL_SESSION_ID continues a session. The session id is printed (to stderr, after the answer).
 */
import { KeelError, createKeelClient } from "../src/index.js";

const baseUrl = process.env.KEEL_URL ?? "http://127.0.0.1:8000";
const apiKey = process.env.KEEL_API_KEY;
if (!apiKey) {
  console.error("Set KEEL_API_KEY to an API key (POST /api/v1/api-keys; see sdk/typescript/README.md).");
  process.exit(2);
}
const message = process.argv.slice(2).join(" ") || "Hello from TypeScript";

const keel = createKeelClient({ baseUrl, apiKey });
const controller = new AbortController();
process.once("SIGINT", () => controller.abort());

try {
  const stream = keel.chatStream(message, {
    sessionId: process.env.KEEL_SESSION_ID || undefined,
    signal: controller.signal,
  });
  let status = "unknown";
  for await (const ev of stream) {
    switch (ev.event) {
      case "message.delta":
        process.stdout.write(ev.data.delta);
        break;
      case "message.reset":
        process.stdout.write("\n[the model call is retried; its text starts again]\n");
        break;
      case "citation":
        console.error(`[source: ${ev.data.title}]`);
        break;
      case "approval.required":
        console.error(`\n[tool ${ev.data.tool} waits for approval ${ev.data.id}]`);
        break;
      case "turn.completed":
        status = ev.data.status;
        break;
      case "error":
        status = "failed";
        console.error(`\n[error ${ev.data.code}: ${ev.data.message}]`);
        process.exitCode = 1;
        break;
      default:
        break;
    }
  }
  if (stream.paused) status = "awaiting_approval";
  process.stdout.write("\n");
  console.log(`session: ${stream.sessionId}`);
  console.log(`turn: ${stream.turnId} (${status})`);
} catch (error) {
  if (error instanceof KeelError) {
    console.error(`Keel answered ${error.status} ${error.code}: ${error.message} (request ${error.requestId})`);
    process.exit(1);
  }
  throw error;
}
