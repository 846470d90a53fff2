/**
 * `createKeelClient()`: Keel's REST API with types generated from docs/openapi.json
 * (src/schema.d.ts, `npm run generate`) through openapi-fetch, a few typed helpers, and
 * chat streams (src/sse.ts).
 */
import createClient, { type Client } from "openapi-fetch";

import { KeelError } from "./errors.js";
import type { components, paths } from "./schema.js";
import {
  type ChatStreamOptions,
  type TurnEventsOptions,
  type TurnStream,
  chatStream,
  turnEvents,
} from "./sse.js";

export type Schemas = components["schemas"];
export type ChatResponse = Schemas["ChatResponse"];
export type SessionList = Schemas["SessionList"];

export interface KeelClientOptions {
  /** The API's origin, e.g. `https://keel.example.com` (paths start with `/api/v1`). */
  baseUrl: string;
  /** An API key (`keel_…`, `POST /api/v1/api-keys`). */
  apiKey?: string | undefined;
  /** An EntraID / OIDC access token, or a dev token (`KEEL_AUTH_MODE=dev`). */
  token?: string | undefined;
  /** Extra headers on every request (e.g. `X-Request-ID`). */
  headers?: Record<string, string> | undefined;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof globalThis.fetch | undefined;
}

export interface ChatOptions {
  /** Continue this session; omit to start a new one (its id is in the answer). */
  sessionId?: string | undefined;
  knowledgeBaseIds?: string[] | undefined;
  agent?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface KeelClient {
  /** The typed openapi-fetch client for every route of the spec:
   * `await keel.raw.GET("/api/v1/usage")` answers `{ data, error, response }`;
   * wrap it in `unwrap()` to get `data` or a thrown `KeelError`. */
  readonly raw: Client<paths>;
  /** `POST /api/v1/chat`: send a message and wait for the finished turn. A turn that
   * failed still answers (with `status: "failed"` and `error`); refusals throw `KeelError`. */
  chat(message: string, options?: ChatOptions): Promise<ChatResponse>;
  /** `GET /api/v1/sessions`: my sessions, most recently active first. */
  listSessions(options?: { limit?: number; before?: string }): Promise<SessionList>;
  /** `POST /api/v1/chat/stream`: the turn's typed events as they happen (src/sse.ts). */
  chatStream(message: string, options?: ChatStreamOptions): TurnStream;
  /** `GET /api/v1/sessions/{session_id}/turns/{turn_id}/events`: replay after `lastEventId`, then live. */
  turnEvents(sessionId: string, turnId: string, options?: TurnEventsOptions): TurnStream;
}

/** `data` of an openapi-fetch result, or its error as a thrown `KeelError`. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (!result.response.ok || result.error !== undefined) {
    throw KeelError.fromResponse(result.response, result.error);
  }
  return result.data as T;
}

export function createKeelClient(options: KeelClientOptions): KeelClient {
  const { baseUrl, apiKey, token } = options;
  if (apiKey && token) throw new Error("createKeelClient: pass apiKey or token, not both");
  const credential = apiKey ?? token;
  if (!credential) throw new Error("createKeelClient: an apiKey or a token is required");
  const raw = createClient<paths>({
    baseUrl: baseUrl.replace(/\/+$/, ""),
    headers: { ...options.headers, Authorization: `Bearer ${credential}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });

  return {
    raw,
    async chat(message, { sessionId, knowledgeBaseIds, agent, signal } = {}) {
      const body: Schemas["ChatRequest"] = { message };
      if (sessionId !== undefined) body.session_id = sessionId;
      if (knowledgeBaseIds !== undefined) body.knowledge_base_ids = knowledgeBaseIds;
      if (agent !== undefined) body.agent = agent;
      return unwrap(await raw.POST("/api/v1/chat", { body, signal }));
    },
    async listSessions(query = {}) {
      return unwrap(await raw.GET("/api/v1/sessions", { params: { query } }));
    },
    chatStream: (message, streamOptions) => chatStream(raw, message, streamOptions),
    turnEvents: (sessionId, turnId, streamOptions) => turnEvents(raw, sessionId, turnId, streamOptions),
  };
}
