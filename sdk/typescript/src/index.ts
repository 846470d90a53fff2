export {
  type ChatOptions,
  type ChatResponse,
  type KeelClient,
  type KeelClientOptions,
  type Schemas,
  type SessionList,
  createKeelClient,
  unwrap,
} from "./client.js";
export { type ErrorDetail, KeelError } from "./errors.js";
export type { components, operations, paths } from "./schema.js";
export {
  type ChatStreamOptions,
  type KeelEvent,
  type KeelEventData,
  type KeelEventName,
  KEEL_EVENT_NAMES,
  type SseMessage,
  SseParser,
  type StreamOptions,
  TurnStream,
  type TurnEventsOptions,
  chatStream,
  parseSse,
  toKeelEvent,
  turnEvents,
} from "./sse.js";
