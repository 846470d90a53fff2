/**
 * Server-Sent Events for Keel's chat streams (docs/api.md "POST /api/v1/chat/stream").
 *
 * Hand-written on purpose: OpenAPI generators do not model `text/event-stream`, and the
 * browser's `EventSource` can neither POST nor send an `Authorization` header.
 *
 * - {@link SseParser}: the SSE wire format as the HTML standard defines it (lines ended by
 *   CRLF, LF or CR, `event:` / `data:` / `id:` / `retry:` fields, multi-line `data`, comments,
 *   a leading BOM), fed chunks cut anywhere.
 * - {@link chatStream} / {@link turnEvents}: a turn's events as typed objects, resumed with
 *   `Last-Event-ID` on `GET /api/v1/sessions/{session_id}/turns/{turn_id}/events` when the
 *   connection drops.
 */
import type { Client } from "openapi-fetch";

import { KeelError } from "./errors.js";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

// ------------------------------------------------------------------ the wire format

/** One dispatched SSE message. */
export interface SseMessage {
  /** The `event:` field, `"message"` when there was none. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The stream's last event id when this message was dispatched (an `id:` persists
   * until another one replaces it, as in `EventSource.lastEventId`). */
  lastEventId: string;
  /** Whether this message carried an `id:` field itself. */
  hasId: boolean;
  /** The `retry:` field (reconnection time in ms) if this message set one. */
  retry: number | undefined;
}

/**
 * Incremental SSE parser: `push()` text as it arrives (cut anywhere, even between the CR
 * and LF of a CRLF), get back the messages completed so far; `end()` at end of stream
 * discards an unfinished message, as the standard says.
 */
export class SseParser {
  /** Comments (`: ping - …` keep-alives) seen, for callers that care; otherwise ignored. */
  onComment: ((text: string) => void) | undefined;

  private buffer = "";
  private started = false;
  private skipLf = false; // the last chunk ended in CR: a leading LF belongs to it
  private data: string[] = [];
  private eventType = "";
  private lastEventId = "";
  private sawId = false;
  private retry: number | undefined;

  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.skipLf && text.length > 0) {
      this.skipLf = false;
      if (text[0] === "\n") text = text.slice(1);
    }
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== "\r" && ch !== "\n") continue;
      const line = this.buffer.slice(start, i);
      if (ch === "\r") {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === "\n") i++;
        } else {
          this.skipLf = true;
        }
      }
      start = i + 1;
      const message = this.line(line);
      if (message) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** End of stream: a message without its blank line is not dispatched. */
  end(): SseMessage[] {
    this.buffer = "";
    this.data = [];
    this.eventType = "";
    this.sawId = false;
    this.retry = undefined;
    return [];
  }

  private line(line: string): SseMessage | undefined {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) {
      this.onComment?.(line.slice(1).replace(/^ /, ""));
      return undefined;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) {
          this.lastEventId = value;
          this.sawId = true;
        }
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retry = Number.parseInt(value, 10);
        break;
      default:
        break; // unknown fields are ignored
    }
    return undefined;
  }

  private dispatch(): SseMessage | undefined {
    const hasId = this.sawId;
    const retry = this.retry;
    const data = this.data;
    const event = this.eventType || "message";
    this.data = [];
    this.eventType = "";
    this.sawId = false;
    this.retry = undefined;
    if (data.length === 0) return undefined; // nothing to dispatch (the id still counts)
    return { event, data: data.join("\n"), lastEventId: this.lastEventId, hasId, retry };
  }
}

/** The SSE messages of a byte stream (a `fetch` body), decoded as UTF-8 across chunks. */
export async function* parseSse(
  body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
  parser: SseParser = new SseParser(),
): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder("utf-8");
  for await (const bytes of iterate(body)) {
    yield* parser.push(decoder.decode(bytes, { stream: true }));
  }
  yield* parser.push(decoder.decode());
  parser.end();
}

async function* iterate(
  body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  if (Symbol.asyncIterator in body) {
    yield* body as AsyncIterable<Uint8Array>;
    return;
  }
  const reader = (body as ReadableStream<Uint8Array>).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

// ------------------------------------------------------------------ Keel's events

/** The `data` of each event a turn sends (docs/api.md "Events"). */
export interface KeelEventData {
  "turn.started": { session_id: string; turn_id: string };
  citation: Schemas["Citation"] & { turn_id: string };
  "message.delta": { turn_id: string; step: number; delta: string };
  "message.reset": { turn_id: string; step: number; reason: string };
  "approval.required": Schemas["ApprovalView"];
  "approval.decided": {
    turn_id: string;
    id: string;
    tool: string;
    arguments: Record<string, unknown>;
    status: "approved" | "denied" | "expired";
    decided_by: string | null;
    decided_by_name: string | null;
  };
  "budget.warning": Schemas["BudgetWarning"] & { turn_id: string };
  "turn.completed": Schemas["ChatResponse"];
  error: { turn_id: string; code: string; message: string };
}

export type KeelEventName = keyof KeelEventData;

/** Every event name Keel sends; others are skipped ("clients should ignore events they do not know"). */
export const KEEL_EVENT_NAMES: readonly KeelEventName[] = [
  "turn.started",
  "citation",
  "message.delta",
  "message.reset",
  "approval.required",
  "approval.decided",
  "budget.warning",
  "turn.completed",
  "error",
];

/** A typed event: switch on `event` and `data` has that event's shape. */
export type KeelEvent = {
  [K in KeelEventName]: {
    event: K;
    /** The event's own `id:` (a Redis stream id such as `1795924665290-0`); undefined for
     * events sent without one (the stream's own `timeout`, a final event rebuilt from the
     * stored turn). */
    id: string | undefined;
    data: KeelEventData[K];
  };
}[KeelEventName];

const TERMINAL = new Set<string>(["turn.completed", "error"]);
const KNOWN = new Set<string>(KEEL_EVENT_NAMES);

/** The typed event of an SSE message, or undefined for an event Keel does not define. */
export function toKeelEvent(message: SseMessage): KeelEvent | undefined {
  if (!KNOWN.has(message.event)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(message.data);
  } catch {
    throw new KeelError({
      status: 200,
      code: "malformed_event",
      message: `event ${message.event}: data is not JSON`,
    });
  }
  return {
    event: message.event,
    id: message.hasId ? message.lastEventId : undefined,
    data,
  } as KeelEvent;
}

// ------------------------------------------------------------------ streams with resume

export interface StreamOptions {
  /** Abort the stream (and any reconnection wait). */
  signal?: AbortSignal | undefined;
  /** Reconnections allowed in a row without receiving an event (default 5). */
  maxReconnects?: number | undefined;
  /** First wait before reconnecting, in ms (default 500; doubled each try, at most 10 s;
   * a `retry:` field or a `Retry-After` header overrides it). */
  reconnectDelayMs?: number | undefined;
}

export interface ChatStreamOptions extends StreamOptions {
  /** Continue this session; omit to start a new one (its id is `stream.sessionId`). */
  sessionId?: string | undefined;
  knowledgeBaseIds?: string[] | undefined;
  agent?: string | undefined;
}

export interface TurnEventsOptions extends StreamOptions {
  /** Replay after this event id; omit to replay the turn from its first event. */
  lastEventId?: string | undefined;
}

type Opener = (lastEventId: string | undefined) => Promise<Response>;

/**
 * A turn's events as an async iterator. Iterate it once. It ends after `turn.completed`
 * or `error`, or when the server pauses the stream at `approval.required` (then `paused`
 * is true: decide the approval, then iterate `resume()`). A dropped connection is resumed
 * on the events route with `Last-Event-ID`, so no event is lost or repeated.
 */
export class TurnStream implements AsyncIterable<KeelEvent> {
  /** From `X-Session-ID` (or `turn.started`); known once the first response arrived. */
  sessionId: string | undefined;
  /** From `X-Turn-ID` (or `turn.started`). */
  turnId: string | undefined;
  /** The last `id:` received: what a resume sends as `Last-Event-ID`. */
  lastEventId: string | undefined;
  /** The stream ended at `approval.required` while the approval waits for a decision. */
  paused = false;
  /** The stream ended with `turn.completed` or `error`. */
  done = false;
  /** How many times the connection was re-opened. */
  reconnects = 0;

  private started = false;

  /** @internal use {@link chatStream} or {@link turnEvents}. */
  constructor(
    private readonly raw: Client<paths>,
    /** Opens the first response (the chat POST); undefined: start on the events route. */
    private readonly first: Opener | undefined,
    private readonly options: StreamOptions,
    init: { sessionId?: string | undefined; turnId?: string | undefined; lastEventId?: string | undefined } = {},
  ) {
    this.sessionId = init.sessionId;
    this.turnId = init.turnId;
    this.lastEventId = init.lastEventId;
  }

  /** A new stream that carries on from this one's last event (after an approval decision,
   * or after this stream's own `timeout` error). */
  resume(options: StreamOptions = this.options): TurnStream {
    if (!this.sessionId || !this.turnId) {
      throw new Error("resume(): the turn is not known yet (iterate the stream first)");
    }
    return turnEvents(this.raw, this.sessionId, this.turnId, { ...options, lastEventId: this.lastEventId });
  }

  [Symbol.asyncIterator](): AsyncIterator<KeelEvent> {
    if (this.started) throw new Error("a TurnStream can be iterated only once");
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<KeelEvent> {
    const { signal } = this.options;
    const maxReconnects = this.options.maxReconnects ?? 5;
    const baseDelay = this.options.reconnectDelayMs ?? 500;
    let failures = 0;
    let serverRetry: number | undefined;
    const resumeOpener: Opener = (lastEventId) =>
      openTurnEvents(this.raw, this.sessionId!, this.turnId!, lastEventId, signal);
    let open: Opener = this.first ?? resumeOpener;

    for (;;) {
      let response: Response | undefined;
      let lastWasApproval = false;
      let retryAfterMs: number | undefined;
      try {
        response = await open(this.lastEventId);
        this.sessionId ??= response.headers.get("X-Session-ID") ?? undefined;
        this.turnId ??= response.headers.get("X-Turn-ID") ?? undefined;
        if (!response.body) throw new TypeError("the response has no body");
        for await (const message of parseSse(response.body)) {
          failures = 0;
          if (message.retry !== undefined) serverRetry = message.retry;
          if (message.hasId) this.lastEventId = message.lastEventId;
          const event = toKeelEvent(message);
          if (!event) continue;
          if (event.event === "turn.started") {
            this.sessionId ??= event.data.session_id;
            this.turnId ??= event.data.turn_id;
          }
          lastWasApproval = event.event === "approval.required";
          yield event;
          if (TERMINAL.has(event.event)) {
            this.done = true;
            return;
          }
        }
        if (lastWasApproval) {
          this.paused = true;
          return;
        }
        // The body ended without a last event: the connection dropped.
      } catch (error) {
        if (signal?.aborted) throw error;
        if (error instanceof KeelError) {
          // A refused POST is final (re-sending could start a second turn).
          if (!retryable(error) || open !== resumeOpener) throw error;
          if (error.retryAfter !== undefined) retryAfterMs = error.retryAfter * 1000;
        } else if (!(error instanceof TypeError) && !isConnectionError(error)) {
          throw error;
        } else if (!this.sessionId || !this.turnId) {
          // The POST itself failed before the turn was named: it cannot be resumed (and
          // re-sending the message could start a second turn).
          throw error;
        }
      }
      if (!this.sessionId || !this.turnId) {
        throw new KeelError({ status: 0, code: "stream_dropped", message: "the stream ended before the turn was named" });
      }
      failures += 1;
      if (failures > maxReconnects) {
        throw new KeelError({
          status: 0,
          code: "stream_dropped",
          message: `the stream dropped and ${maxReconnects} reconnections failed; resume later with turnEvents()`,
        });
      }
      const delay = retryAfterMs ?? serverRetry ?? Math.min(baseDelay * 2 ** (failures - 1), 10_000);
      await sleep(delay, signal);
      this.reconnects += 1;
      open = resumeOpener;
    }
  }
}

function retryable(error: KeelError): boolean {
  return error.status === 429 || error.status >= 500 || error.status === 0;
}

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|UND_ERR_)/.test(code);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

async function streamResponse(
  result: { error?: unknown; response: Response },
): Promise<Response> {
  const { response } = result;
  if (!response.ok) throw KeelError.fromResponse(response, result.error);
  return response;
}

async function openTurnEvents(
  raw: Client<paths>,
  sessionId: string,
  turnId: string,
  lastEventId: string | undefined,
  signal: AbortSignal | undefined,
): Promise<Response> {
  return streamResponse(
    await raw.GET("/api/v1/sessions/{session_id}/turns/{turn_id}/events", {
      params: {
        path: { session_id: sessionId, turn_id: turnId },
        header: lastEventId ? { "Last-Event-ID": lastEventId } : {},
      },
      headers: { Accept: "text/event-stream" },
      parseAs: "stream",
      signal,
    }),
  );
}

/**
 * Send `message` and stream the turn (`POST /api/v1/chat/stream`). Errors found before the
 * turn starts (auth, validation, `session_not_found`, …) throw a `KeelError`.
 */
export function chatStream(raw: Client<paths>, message: string, options: ChatStreamOptions = {}): TurnStream {
  const { sessionId, knowledgeBaseIds, agent, ...streamOptions } = options;
  const body: Schemas["ChatRequest"] = { message };
  if (sessionId !== undefined) body.session_id = sessionId;
  if (knowledgeBaseIds !== undefined) body.knowledge_base_ids = knowledgeBaseIds;
  if (agent !== undefined) body.agent = agent;
  const open: Opener = async () =>
    streamResponse(
      await raw.POST("/api/v1/chat/stream", {
        body,
        headers: { Accept: "text/event-stream" },
        parseAs: "stream",
        signal: options.signal,
      }),
    );
  return new TurnStream(raw, open, streamOptions, { sessionId });
}

/**
 * A turn's events after `lastEventId` (all of them without it), then live
 * (`GET /api/v1/sessions/{session_id}/turns/{turn_id}/events`).
 */
export function turnEvents(
  raw: Client<paths>,
  sessionId: string,
  turnId: string,
  options: TurnEventsOptions = {},
): TurnStream {
  const { lastEventId, ...streamOptions } = options;
  return new TurnStream(raw, undefined, streamOptions, { sessionId, turnId, lastEventId });
}
