/**
 * The Lazy Pirate framing (LPX/1), between Lazy Pirate clients and a server or a queue's frontend:
 * request ids (deduplication of retries), the optional meta frame of a request (its named queue and
 * headers) and remote errors. `docs/protocol.md` section 7 is the specification. Re-exported by
 * `lib/protocol.ts`.
 */
import { packMeta, unpackMeta } from "./codec.js"
import { PirateError, errorMessage, toError } from "./errors.js"
import { checkHeaders, checkQueueName } from "./headers.js"
import { stripUndefined } from "./validate.js"

/**
 * Longest request id: a message id's (`MAX_ID_LENGTH` in protocol.ts), which it becomes in a
 * queue.
 */
const MAX_REQUEST_ID = 64

// Lazy Pirate framing (LPX/1). A plain request is one frame (any REP server answers it).
// A framed request is [header, body] with header = "LPX" 0x01 request-id, or [header, body, meta]
// with meta = msgpack{queue?, headers?} (the named queue and the headers of the request, for a
// ParanoidPirateQueue); its reply is [status, body] with status = "LPX" 0x01 code (0 ok, 1 error:
// body = msgpack{message, name, code?}).

const LPX_MAGIC = Buffer.from([0x4c, 0x50, 0x58, 0x01]) // "LPX" 1
export const LPX_OK = 0
export const LPX_ERROR = 1

export function encodeRequestHeader(requestId: string): Buffer {
  return Buffer.concat([LPX_MAGIC, Buffer.from(requestId, "latin1")])
}

/** The request id of a framed request's header, or `null` when the frame is not one. */
export function decodeRequestHeader(frame: Buffer | undefined): string | null {
  if (!frame || frame.length < 5 || frame.length > 4 + MAX_REQUEST_ID) return null
  if (!frame.subarray(0, 4).equals(LPX_MAGIC)) return null
  return frame.toString("latin1", 4)
}

/** What the meta frame of an LPX/1 request names: its queue and its headers. */
export interface RequestMeta {
  queue?: string | undefined
  headers?: Readonly<Record<string, string>> | undefined
}

/** The meta frame of a request (`[header, body, meta]`): msgpack `{ queue?, headers? }`. */
export function encodeRequestMeta(meta: RequestMeta): Buffer {
  return packMeta(stripUndefined({ queue: meta.queue, headers: meta.headers }))
}

/**
 * Reads a request's meta frame: a msgpack map with an optional `queue` (a queue name) and optional
 * `headers` (strings), other keys ignored.
 *
 * @throws PirateError `PIRATE_PROTOCOL` saying what is wrong with it
 */
export function decodeRequestMeta(frame: Buffer): RequestMeta {
  let meta: unknown
  try {
    meta = unpackMeta(frame)
  } catch (err) {
    throw new PirateError(
      "PIRATE_PROTOCOL",
      `the request's meta frame is not msgpack: ${errorMessage(err)}`,
      { cause: err },
    )
  }
  const proto: unknown = typeof meta === "object" && meta !== null && Object.getPrototypeOf(meta)
  // A plain map only (msgpackr decodes the reserved byte 0xc1 to an object of its own class).
  if (proto !== Object.prototype && proto !== null)
    throw new PirateError(
      "PIRATE_PROTOCOL",
      "the request's meta frame must be a msgpack map of { queue?, headers? }",
    )
  const m = meta as Record<string, unknown>
  try {
    return stripUndefined({
      queue: m["queue"] === undefined ? undefined : checkQueueName(m["queue"]),
      headers: m["headers"] === undefined ? undefined : checkHeaders(m["headers"]),
    })
  } catch (err) {
    throw new PirateError(
      "PIRATE_PROTOCOL",
      `the request's meta frame is invalid: ${errorMessage(err)}`,
      { cause: err },
    )
  }
}

export function encodeReplyStatus(code: typeof LPX_OK | typeof LPX_ERROR): Buffer {
  return Buffer.concat([LPX_MAGIC, Buffer.from([code])])
}

/** The status code of a framed reply, or `null` when the frame is not one. */
export function decodeReplyStatus(frame: Buffer | undefined): number | null {
  if (!frame || frame.length !== 5 || !frame.subarray(0, 4).equals(LPX_MAGIC)) return null
  return frame[4] ?? null
}

/**
 * The body of an LPX/1 error reply. `code` is for the server's own refusals (e.g. `PIRATE_BUSY`),
 * never a handler's error: a client maps a code it knows to its own error.
 */
export function encodeRemoteError(err: unknown, code?: string): Buffer {
  const e = toError(err)
  return packMeta(
    code === undefined
      ? { message: e.message, name: e.name }
      : { message: e.message, name: e.name, code },
  )
}

export function decodeRemoteError(frame: Buffer | undefined): {
  message: string
  name?: string
  code?: string
} {
  try {
    const m = frame ? unpackMeta(frame) : undefined
    if (typeof m === "object" && m !== null) {
      const r = m as Record<string, unknown>
      const message = typeof r["message"] === "string" ? r["message"] : "remote error"
      const name = r["name"]
      const code = r["code"]
      return {
        message,
        ...(typeof name === "string" ? { name } : {}),
        ...(typeof code === "string" ? { code } : {}),
      }
    }
  } catch {
    /* fall through: an unreadable error body still is an error */
  }
  return { message: "remote error (unreadable error body)" }
}
