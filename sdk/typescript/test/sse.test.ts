// The SSE parser against the wire format (HTML standard, "Server-sent events"), no server.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { type SseMessage, SseParser, parseSse, toKeelEvent } from "../src/sse.js";

/** Every message of `chunks` fed one after another. */
function parse(chunks: string[]): SseMessage[] {
  const parser = new SseParser();
  const out = chunks.flatMap((chunk) => parser.push(chunk));
  parser.end();
  return out;
}

const brief = (messages: SseMessage[]) => messages.map((m) => [m.event, m.data, m.lastEventId]);

const KEEL = [
  "id: 1795924665264-0",
  "event: turn.started",
  'data: {"session_id": "s1", "turn_id": "t1"}',
  "",
  ": ping - 2026-11-29 03:57:53.038657+00:00",
  "",
  "id: 1795924665290-0",
  "event: message.delta",
  'data: {"turn_id": "t1", "step": 0, "delta": "Hello"}',
  "",
  "id: 1795924665322-0",
  "event: turn.completed",
  'data: {"session_id": "s1", "turn_id": "t1", "status": "completed", "message": {"role": "assistant", "content": "Hello"}}',
  "",
  "",
].join("\r\n");

const EXPECTED = [
  ["turn.started", '{"session_id": "s1", "turn_id": "t1"}', "1795924665264-0"],
  ["message.delta", '{"turn_id": "t1", "step": 0, "delta": "Hello"}', "1795924665290-0"],
  [
    "turn.completed",
    '{"session_id": "s1", "turn_id": "t1", "status": "completed", "message": {"role": "assistant", "content": "Hello"}}',
    "1795924665322-0",
  ],
];

describe("SseParser", () => {
  test("a Keel stream in one chunk, CRLF line ends, a keep-alive comment", () => {
    assert.deepEqual(brief(parse([KEEL])), EXPECTED);
  });

  test("the same stream cut at every position, and one character at a time", () => {
    for (let cut = 0; cut <= KEEL.length; cut++) {
      assert.deepEqual(brief(parse([KEEL.slice(0, cut), KEEL.slice(cut)])), EXPECTED, `cut at ${cut}`);
    }
    assert.deepEqual(brief(parse([...KEEL])), EXPECTED);
  });

  test("LF, CR and CRLF line ends, and a CRLF split between chunks, are one line end each", () => {
    const lf = "event: a\ndata: 1\n\n";
    const cr = "event: a\rdata: 1\r\r";
    const crlf = "event: a\r\ndata: 1\r\n\r\n";
    for (const text of [lf, cr, crlf]) assert.deepEqual(brief(parse([text])), [["a", "1", ""]]);
    // CR at the end of one chunk, LF at the start of the next: not an extra blank line
    assert.deepEqual(brief(parse(["data: x\r", "\ndata: y\r", "\n\r", "\n"])), [["message", "x\ny", ""]]);
    // a lone CR at a chunk's end followed by another line is still a line end
    assert.deepEqual(brief(parse(["data: x\r", "data: y\r\r"])), [["message", "x\ny", ""]]);
  });

  test("multi-line data is joined with LF; one space after the colon is dropped, no more", () => {
    const messages = parse(["data: first\ndata:second\ndata:  third\ndata\ndata: \n\n"]);
    assert.equal(messages.length, 1);
    assert.equal(messages[0]!.data, "first\nsecond\n third\n\n");
  });

  test("comments and keep-alives never make an event; a blank data-less block dispatches nothing", () => {
    assert.deepEqual(parse([": ping\n\n:\n\n: ping - 1\n", "\n", "event: lonely\n\n"]), []);
    const comments: string[] = [];
    const parser = new SseParser();
    parser.onComment = (text) => comments.push(text);
    parser.push(": ping - 15 s\n\n");
    assert.deepEqual(comments, ["ping - 15 s"]);
  });

  test("id persists to later events, may be reset to empty, and is ignored with a NUL", () => {
    const messages = parse([
      "id: 1-0\ndata: a\n\n",
      "data: b\n\n", // no id of its own: the last id still stands
      "id: 2\u00000\ndata: c\n\n", // NUL: ignored
      "id\ndata: d\n\n", // empty id resets it
    ]);
    assert.deepEqual(
      messages.map((m) => [m.data, m.lastEventId, m.hasId]),
      [
        ["a", "1-0", true],
        ["b", "1-0", false],
        ["c", "1-0", false],
        ["d", "", true],
      ],
    );
    // an id on a block without data still moves the last event id
    const later = parse(["id: 5-0\n\ndata: e\n\n"]);
    assert.deepEqual(brief(later), [["message", "e", "5-0"]]);
  });

  test("retry with digits only; unknown fields ignored; event type resets after each dispatch", () => {
    const messages = parse(["retry: 3000\nfoo: bar\nevent: x\ndata: 1\n\nretry: 1.5\ndata: 2\n\n"]);
    assert.deepEqual(
      messages.map((m) => [m.event, m.data, m.retry]),
      [
        ["x", "1", 3000],
        ["message", "2", undefined],
      ],
    );
  });

  test("a leading BOM is dropped; an unfinished event at the end is discarded", () => {
    assert.deepEqual(brief(parse(["\ufeffdata: a\n\n", "data: never finished\n"])), [["message", "a", ""]]);
    // only the stream's first BOM: a second one is part of the line (an unknown field here)
    assert.deepEqual(brief(parse(["\ufeff", "\ufeffdata: ignored\n\n"])), []);
  });
});

describe("parseSse over bytes", () => {
  test("UTF-8 characters split across chunks are decoded whole", async () => {
    const bytes = new TextEncoder().encode('event: message.delta\ndata: {"delta": "héllo → 🌍"}\n\n');
    const chunks = [...bytes].map((b) => new Uint8Array([b])); // one byte at a time
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const c of chunks) controller.enqueue(c);
        controller.close();
      },
    });
    const messages: SseMessage[] = [];
    for await (const m of parseSse(body)) messages.push(m);
    assert.equal(messages.length, 1);
    assert.equal(JSON.parse(messages[0]!.data).delta, "héllo → 🌍");
  });
});

describe("toKeelEvent", () => {
  const message = (event: string, data: string, id?: string): SseMessage => ({
    event,
    data,
    lastEventId: id ?? "9-0",
    hasId: id !== undefined,
    retry: undefined,
  });

  test("known events are typed, with their own id or none", () => {
    const delta = toKeelEvent(message("message.delta", '{"turn_id": "t", "step": 0, "delta": "Hi"}', "1-0"));
    assert.ok(delta && delta.event === "message.delta");
    assert.equal(delta.data.delta, "Hi");
    assert.equal(delta.id, "1-0");
    const timeout = toKeelEvent(message("error", '{"turn_id": "t", "code": "timeout", "message": "m"}'));
    assert.equal(timeout?.id, undefined);
  });

  test("unknown events are skipped; bad JSON is a KeelError", () => {
    assert.equal(toKeelEvent(message("tool.future", "{}", "1-0")), undefined);
    assert.equal(toKeelEvent(message("message", "hello")), undefined);
    assert.throws(() => toKeelEvent(message("citation", "{not json")), { name: "KeelError", code: "malformed_event" });
  });
});
