// createKeelClient and TurnStream against a scripted fetch: headers, errors, resume. No server.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { KeelError, createKeelClient, unwrap } from "../src/index.js";

interface Seen {
  method: string;
  url: string;
  headers: Headers;
  body: string;
}

/** A fetch answering each request with the next scripted answer, recording what it saw. */
function scripted(answers: Array<(req: Seen) => Response | Promise<Response>>) {
  const seen: Seen[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : new Request(input, init);
    const req = {
      method: request.method,
      url: request.url,
      headers: request.headers,
      body: request.body ? await request.text() : "",
    };
    seen.push(req);
    const next = answers.shift();
    if (!next) throw new Error(`unexpected request ${req.method} ${req.url}`);
    return next(req);
  };
  return { fetch: fetch as typeof globalThis.fetch, seen };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "X-Request-ID": "req-header", ...headers },
  });

/** An SSE response of `text`; with `drop`, the body errors (a dropped connection) after it. */
function sse(text: string, { drop = false, headers = {} as Record<string, string> } = {}) {
  let sent = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(new TextEncoder().encode(text));
      } else if (drop) controller.error(new TypeError("terminated"));
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream", ...headers } });
}

const event = (id: string | null, name: string, data: unknown) =>
  `${id ? `id: ${id}\n` : ""}event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

const completed = (content: string) => ({
  session_id: "s1",
  turn_id: "t1",
  status: "completed",
  message: { role: "assistant", content, citations: [] },
  tool_calls: [],
  approvals: [],
  usage: { prompt_tokens: 1, completion_tokens: 2 },
  model: "fake",
  error: null,
  notice: null,
});

describe("createKeelClient", () => {
  test("sends the API key as a bearer token and the chat body; listSessions passes its query", async () => {
    const { fetch, seen } = scripted([
      () => json(200, completed("Echo: hi")),
      () => json(200, { sessions: [], next_before: null }),
    ]);
    const keel = createKeelClient({ baseUrl: "http://keel.test/", apiKey: "keel_abc", fetch });
    const answer = await keel.chat("hi", { sessionId: "s1" });
    assert.equal(answer.message.content, "Echo: hi");
    assert.equal(seen[0]!.url, "http://keel.test/api/v1/chat");
    assert.equal(seen[0]!.headers.get("authorization"), "Bearer keel_abc");
    assert.deepEqual(JSON.parse(seen[0]!.body), { message: "hi", session_id: "s1" });
    assert.deepEqual(await keel.listSessions({ limit: 5 }), { sessions: [], next_before: null });
    assert.equal(seen[1]!.url, "http://keel.test/api/v1/sessions?limit=5");
  });

  test("a Keel error body becomes a KeelError with status, code, message, requestId", async () => {
    const body = { error: { code: "session_not_found", message: "session not found", request_id: "r-1" } };
    const { fetch } = scripted([() => json(404, body)]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", token: "jwt", fetch });
    await assert.rejects(keel.chat("hi", { sessionId: "nope" }), (error: unknown) => {
      assert.ok(error instanceof KeelError);
      assert.deepEqual(
        [error.status, error.code, error.message, error.requestId],
        [404, "session_not_found", "session not found", "r-1"],
      );
      return true;
    });
  });

  test("Retry-After is read; a body that is not Keel's is still a KeelError", async () => {
    const limited = { error: { code: "rate_limited", message: "slow down", request_id: "r-2" } };
    const { fetch } = scripted([
      () => json(429, limited, { "Retry-After": "7" }),
      () => new Response("<html>Bad gateway</html>", { status: 502, headers: { "X-Request-ID": "px" } }),
    ]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    await assert.rejects(keel.listSessions(), { name: "KeelError", status: 429, code: "rate_limited", retryAfter: 7 });
    await assert.rejects(keel.listSessions(), { name: "KeelError", status: 502, code: "http_502", requestId: "px" });
  });

  test("raw gives every route typed; unwrap() returns data or throws KeelError", async () => {
    const { fetch, seen } = scripted([
      () => json(200, { id: "key_1", name: "n", prefix: "keel_", scopes: [], status: "active" }),
      () => json(403, { error: { code: "insufficient_scope", message: "no", request_id: "r-3" } }),
    ]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    const rotated = unwrap(await keel.raw.POST("/api/v1/api-keys/{key_id}/rotate", { params: { path: { key_id: "key_1" } } }));
    assert.equal(rotated.id, "key_1");
    assert.equal(seen[0]!.url, "http://keel.test/api/v1/api-keys/key_1/rotate");
    const result = await keel.raw.GET("/api/v1/usage");
    assert.equal(result.response.status, 403);
    assert.throws(() => unwrap(result), { code: "insufficient_scope", requestId: "r-3" });
  });

  test("needs exactly one credential", () => {
    assert.throws(() => createKeelClient({ baseUrl: "http://keel.test" }), /apiKey or a token/);
    assert.throws(() => createKeelClient({ baseUrl: "http://keel.test", apiKey: "a", token: "b" }), /not both/);
  });
});

describe("chatStream", () => {
  const started = event("1-0", "turn.started", { session_id: "s1", turn_id: "t1" });
  const delta = (id: string, text: string) => event(id, "message.delta", { turn_id: "t1", step: 0, delta: text });
  const ids = { "X-Session-ID": "s1", "X-Turn-ID": "t1" };

  test("yields typed events to turn.completed; ids and turn come from the response", async () => {
    const { fetch, seen } = scripted([
      () => sse(`${started}: ping\n\n${delta("2-0", "Echo: ")}${delta("3-0", "ping")}${event("4-0", "turn.completed", completed("Echo: ping"))}`, { headers: ids }),
    ]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    const stream = keel.chatStream("ping");
    let text = "";
    const names: string[] = [];
    for await (const ev of stream) {
      names.push(ev.event);
      if (ev.event === "message.delta") text += ev.data.delta;
    }
    assert.deepEqual(names, ["turn.started", "message.delta", "message.delta", "turn.completed"]);
    assert.equal(text, "Echo: ping");
    assert.deepEqual([stream.sessionId, stream.turnId, stream.lastEventId, stream.done], ["s1", "t1", "4-0", true]);
    assert.equal(seen[0]!.method, "POST");
    assert.equal(seen[0]!.headers.get("accept"), "text/event-stream");
    assert.deepEqual(JSON.parse(seen[0]!.body), { message: "ping" });
  });

  test("a dropped connection resumes on the events route with Last-Event-ID; nothing lost or repeated", async () => {
    const { fetch, seen } = scripted([
      () => sse(`${started}${delta("2-0", "Echo: ")}`, { drop: true, headers: ids }),
      () => { throw new TypeError("fetch failed"); }, // the first reconnection fails too
      () => sse(`${delta("3-0", "ping")}${event("4-0", "turn.completed", completed("Echo: ping"))}`),
    ]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    const stream = keel.chatStream("ping", { reconnectDelayMs: 1 });
    const deltas: string[] = [];
    for await (const ev of stream) if (ev.event === "message.delta") deltas.push(ev.data.delta);
    assert.deepEqual(deltas, ["Echo: ", "ping"]);
    assert.equal(stream.reconnects, 2);
    for (const req of seen.slice(1)) {
      assert.equal(req.method, "GET");
      assert.equal(req.url, "http://keel.test/api/v1/sessions/s1/turns/t1/events");
      assert.equal(req.headers.get("last-event-id"), "2-0");
      assert.equal(req.headers.get("authorization"), "Bearer keel_x");
    }
  });

  test("a body that ends without a last event is resumed too; a stream without a turn cannot be", async () => {
    const { fetch, seen } = scripted([
      () => sse(`${started}`, { headers: ids }),
      () => sse(`${event(null, "turn.completed", completed("done"))}`),
    ]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    const names: string[] = [];
    for await (const ev of keel.chatStream("x", { reconnectDelayMs: 1 })) names.push(`${ev.event}@${ev.id}`);
    assert.deepEqual(names, ["turn.started@1-0", "turn.completed@undefined"]);
    assert.equal(seen[1]!.headers.get("last-event-id"), "1-0");

    const bare = scripted([() => { throw new TypeError("fetch failed"); }]);
    const keel2 = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch: bare.fetch });
    await assert.rejects(async () => { for await (const _ of keel2.chatStream("x")) { /* nothing */ } }, TypeError);
    assert.equal(bare.seen.length, 1, "the POST is never re-sent");
  });

  test("ends paused at approval.required; resume() carries on after the decision", async () => {
    const approval = {
      id: "ap1", session_id: "s1", turn_id: "t1", tool: "write", arguments: {}, status: "pending",
      approver_group: null, context_documents: [], reason: null,
    };
    const { fetch, seen } = scripted([
      () => sse(`${started}${event("2-0", "approval.required", approval)}`, { headers: ids }),
      () => sse(`${event("3-0", "approval.decided", { turn_id: "t1", id: "ap1", tool: "write", arguments: {}, status: "approved", decided_by: "u", decided_by_name: null })}${event("4-0", "turn.completed", completed("ok"))}`),
    ]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    const stream = keel.chatStream("write it");
    const names: string[] = [];
    for await (const ev of stream) names.push(ev.event);
    assert.deepEqual(names, ["turn.started", "approval.required"]);
    assert.ok(stream.paused && !stream.done);
    assert.equal(seen.length, 1, "a paused stream does not reconnect by itself");
    const rest: string[] = [];
    for await (const ev of stream.resume()) rest.push(ev.event);
    assert.deepEqual(rest, ["approval.decided", "turn.completed"]);
    assert.equal(seen[1]!.headers.get("last-event-id"), "2-0");
  });

  test("refusals before the turn starts throw KeelError and are not retried; 503 on resume is", async () => {
    const busy = { error: { code: "session_busy", message: "busy", request_id: "r-9" } };
    const down = { error: { code: "upstream_unavailable", message: "down", request_id: "r-10" } };
    const { fetch } = scripted([() => json(429, busy, { "Retry-After": "1" })]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    await assert.rejects(async () => { for await (const _ of keel.chatStream("x")) { /* nothing */ } }, {
      name: "KeelError", status: 429, code: "session_busy", requestId: "r-9",
    });

    const again = scripted([
      () => json(503, down, { "Retry-After": "0" }),
      () => sse(event("5-0", "turn.completed", completed("ok"))),
    ]);
    const keel2 = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch: again.fetch });
    const names: string[] = [];
    for await (const ev of keel2.turnEvents("s1", "t1", { lastEventId: "4-0", reconnectDelayMs: 1 })) names.push(ev.event);
    assert.deepEqual(names, ["turn.completed"]);
    assert.equal(again.seen[0]!.headers.get("last-event-id"), "4-0");
    assert.equal(again.seen[1]!.headers.get("last-event-id"), "4-0");
  });

  test("a 404 on resume throws; too many failed reconnections throw stream_dropped; abort stops it", async () => {
    const gone = { error: { code: "turn_not_found", message: "turn not found", request_id: "r-11" } };
    const { fetch } = scripted([() => json(404, gone)]);
    const keel = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch });
    await assert.rejects(async () => { for await (const _ of keel.turnEvents("s1", "t9")) { /* nothing */ } }, { code: "turn_not_found" });

    const failing = scripted(Array.from({ length: 3 }, () => () => { throw new TypeError("fetch failed"); }));
    const keel2 = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch: failing.fetch });
    await assert.rejects(async () => {
      for await (const _ of keel2.turnEvents("s1", "t1", { maxReconnects: 2, reconnectDelayMs: 1 })) { /* nothing */ }
    }, { code: "stream_dropped" });
    assert.equal(failing.seen.length, 3);

    const controller = new AbortController();
    const slow = scripted([() => sse(started, { headers: ids })]);
    const keel3 = createKeelClient({ baseUrl: "http://keel.test", apiKey: "keel_x", fetch: slow.fetch });
    const stream = keel3.chatStream("x", { signal: controller.signal, reconnectDelayMs: 60_000 });
    await assert.rejects(async () => {
      for await (const _ of stream) controller.abort(new Error("stop"));
    }, /stop/);
  });
});
