/** Keel's error body, `{"error": {"code", "message", "request_id"}}` (docs/api.md "Errors"). */
import type { components } from "./schema.js";

export type ErrorDetail = components["schemas"]["ErrorDetail"];

/**
 * An error answered by Keel (or on the way to it): the HTTP `status`, Keel's stable
 * `code` (branch on it, not on `message`), a `message` safe to show a user, and the
 * `requestId` to quote when reporting a problem (the response's `X-Request-ID`).
 *
 * A body that is not Keel's error shape (a proxy's HTML page, say) still becomes a
 * `KeelError`, with `code` `"http_<status>"`.
 */
export class KeelError extends Error {
  override readonly name = "KeelError";
  readonly status: number;
  readonly code: string;
  readonly requestId: string | undefined;
  /** Seconds from `Retry-After` (429 and 503 carry it), else undefined. */
  readonly retryAfter: number | undefined;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    requestId?: string | undefined;
    retryAfter?: number | undefined;
  }) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
  }

  /** The error for a non-2xx `response` whose body was already read into `body`
   * (parsed JSON, or text when it was not JSON). */
  static fromResponse(response: Response, body: unknown): KeelError {
    const header = response.headers.get("X-Request-ID") ?? undefined;
    const retry = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    const retryAfter = Number.isFinite(retry) ? retry : undefined;
    const detail = errorDetail(body);
    if (detail) {
      return new KeelError({
        status: response.status,
        code: detail.code,
        message: detail.message,
        requestId: detail.request_id || header,
        retryAfter,
      });
    }
    const text = typeof body === "string" ? body.trim().slice(0, 200) : "";
    return new KeelError({
      status: response.status,
      code: `http_${response.status}`,
      message: text || response.statusText || `HTTP ${response.status}`,
      requestId: header,
      retryAfter,
    });
  }

  /** Read a failed `response`'s body and build the error from it. */
  static async fromFetchResponse(response: Response): Promise<KeelError> {
    let body: unknown = await response.text().catch(() => "");
    try {
      body = JSON.parse(body as string);
    } catch {
      // not JSON: keep the text
    }
    return KeelError.fromResponse(response, body);
  }
}

function errorDetail(body: unknown): ErrorDetail | undefined {
  if (typeof body !== "object" || body === null || !("error" in body)) return undefined;
  const error = (body as { error: unknown }).error;
  if (typeof error !== "object" || error === null) return undefined;
  const { code, message, request_id } = error as Record<string, unknown>;
  if (typeof code !== "string" || typeof message !== "string") return undefined;
  return { code, message, request_id: typeof request_id === "string" ? request_id : "" };
}
