import { describe } from "./validate.js"

/**
 * Stable error codes. Codes follow semver; messages may change between releases.
 *
 * - `PIRATE_CLOSED`: the object was closed (or closes) while the call was pending.
 * - `PIRATE_ABORTED`: the caller's `AbortSignal` fired.
 * - `PIRATE_TIMEOUT`: a request got no reply after every try.
 * - `PIRATE_BUSY`: the server refused the request without running it (too many waiting).
 * - `PIRATE_PROTOCOL`: a peer broke the wire protocol.
 * - `PIRATE_REMOTE`: the remote handler failed; `message` is the remote error message.
 * - `PIRATE_DEAD_LETTER`: a message was dead-lettered after too many attempts (or rejected).
 * - `PIRATE_JOURNAL_LOCKED`: another process holds the journal.
 * - `PIRATE_JOURNAL_CORRUPT`: the journal cannot be read.
 * - `PIRATE_JOURNAL_FULL`: the journal could not be opened or written because its disk is full
 *   (ENOSPC, or a quota); the journal takes writes again once space is freed.
 * - `PIRATE_JOURNAL_IO`: the journal could not be opened, read or written, though not damaged
 *   (permissions, a path that is not a directory, a failing disk).
 * - `PIRATE_NOT_OPEN`: the object must be opened first.
 * - `PIRATE_NOT_FOUND`: no such journal or message.
 * - `PIRATE_DECODE`: a payload could not be decoded.
 * - `PIRATE_TOO_LARGE`: a message (or a reply) is larger than its receiver takes
 *   (`maxMessageSize`); the message says its size and the limit.
 * - `PIRATE_ENCODE`: the codec cannot encode a payload (a circular reference, a symbol, a bigint
 *   beyond 64 bits, a non-Buffer with the raw codec…); `cause` is the codec's own error.
 * - `PIRATE_ADDRESS_IN_USE`: an endpoint to bind is in use (by another process, or another
 *   socket of this one); the message names the endpoint and the option (`bind`, `frontend`,
 *   `backend`); `cause` is zeromq's `EADDRINUSE`.
 * - `PIRATE_CODEC_MISMATCH`: a worker and its sender use different codecs (each states its own,
 *   the worker in READY, the sender in WELCOME); the message names both. The sender refuses the
 *   worker and the worker stops that session.
 * - `PIRATE_PASSIVE`: the sender is the passive one of a pair (or has not decided yet): only the
 *   active sender takes `send()`, `request()`, `cancel()`, `replay()` and `drained()`. Wait for
 *   `pair:active`, or send to the other host.
 * - `PIRATE_PAIR_CONFIG`: the two senders of a pair are configured with the same role (reported
 *   as an `error` event; neither becomes active through the other).
 */
export type ErrorCode =
  | "PIRATE_CLOSED"
  | "PIRATE_ABORTED"
  | "PIRATE_TIMEOUT"
  | "PIRATE_BUSY"
  | "PIRATE_PROTOCOL"
  | "PIRATE_REMOTE"
  | "PIRATE_DEAD_LETTER"
  | "PIRATE_JOURNAL_LOCKED"
  | "PIRATE_JOURNAL_CORRUPT"
  | "PIRATE_JOURNAL_FULL"
  | "PIRATE_JOURNAL_IO"
  | "PIRATE_NOT_OPEN"
  | "PIRATE_NOT_FOUND"
  | "PIRATE_DECODE"
  | "PIRATE_TOO_LARGE"
  | "PIRATE_ENCODE"
  | "PIRATE_ADDRESS_IN_USE"
  | "PIRATE_CODEC_MISMATCH"
  | "PIRATE_PASSIVE"
  | "PIRATE_PAIR_CONFIG"

/** Every operational failure of this library is a `PirateError` with a stable {@link ErrorCode}. */
export class PirateError extends Error {
  override name = "PirateError"
  /** Stable, machine-readable code. */
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/**
 * A request got no reply within `timeout` on any of its tries. Code `PIRATE_TIMEOUT`. Every
 * timeout of this library rejects with it: `LazyPirateClient.request()` after its last try,
 * `Sender.request()` after its `timeout` (one try: the sender redelivers on its own).
 */
export class RequestTimeoutError extends PirateError {
  override name = "RequestTimeoutError"
  /** Endpoints that were tried. */
  readonly endpoints: readonly string[]
  /** Tries made in all. */
  readonly tries: number
  /** Timeout of each try (ms). */
  readonly timeout: number
  constructor(
    endpoints: readonly string[],
    tries: number,
    timeout: number,
    options?: ErrorOptions & {
      /** Replaces the default message, which suits a Lazy Pirate client's tries. */
      message?: string
    },
  ) {
    super(
      "PIRATE_TIMEOUT",
      options?.message ??
        `no reply from ${endpoints.join(", ")} after ${tries} ${tries === 1 ? "try" : "tries"} of ${timeout} ms each; is a server running there?`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    )
    this.endpoints = endpoints
    this.tries = tries
    this.timeout = timeout
  }
}

/** The remote handler threw; `message` carries its error message. Code `PIRATE_REMOTE`. */
export class RemoteError extends PirateError {
  override name = "RemoteError"
  /** The `name` of the remote error, when the peer sent one. */
  readonly remoteName: string | undefined
  constructor(message: string, remoteName?: string) {
    super("PIRATE_REMOTE", message)
    this.remoteName = remoteName
  }
}

/** A message was dead-lettered (too many attempts, or rejected). Code `PIRATE_DEAD_LETTER`. */
export class DeadLetterError extends PirateError {
  override name = "DeadLetterError"
  /** Message id. */
  readonly id: string
  /** Attempts made. */
  readonly attempts: number
  constructor(id: string, attempts: number, lastError: string) {
    super(
      "PIRATE_DEAD_LETTER",
      `message ${id} was dead-lettered after ${attempts} ${attempts === 1 ? "attempt" : "attempts"}: ${lastError}`,
    )
    this.id = id
    this.attempts = attempts
  }
}

/** Longest delay a handler may ask for a retry (ms): 24 h, the most a PPX/1 NACK carries. */
export const MAX_RETRY_DELAY = 86_400_000

/**
 * Validates a retry delay (ms): a finite number from 0 to {@link MAX_RETRY_DELAY}, rounded up to
 * a whole ms (the retry never comes earlier than asked). `name` names it in the error.
 * @throws TypeError when it is not a number, RangeError when it is out of range
 */
export function retryDelay(name: string, value: unknown): number {
  if (typeof value !== "number" || Number.isNaN(value))
    throw new TypeError(`'${name}' must be a number of ms, got ${describe(value)}`)
  if (!(value >= 0 && value <= MAX_RETRY_DELAY))
    throw new RangeError(
      `'${name}' must be a finite number of ms from 0 to ${MAX_RETRY_DELAY} (24 h), got ${value}`,
    )
  return Math.ceil(value)
}

/**
 * Thrown by a `Worker`'s handler: nack this attempt and retry the message after `delay` ms
 * instead of the sender's retry backoff (the sender's backoff when `delay` is absent). The
 * attempt still counts against the sender's `maxAttempts`: the last one makes a dead letter,
 * with this error's message as its `lastError`. `ctx.retry({ delay })` does the same without
 * throwing. Not a `PirateError`: the library never throws it, your handler does.
 *
 * @example
 * ```ts
 * handler: async (job) => {
 *   const res = await fetch(url)
 *   if (res.status === 429) throw new RetryError("rate limited", { delay: 5000 })
 *   return res.json()
 * }
 * ```
 * @throws TypeError or RangeError when `delay` is not a number of ms from 0 to 86 400 000
 */
export class RetryError extends Error {
  override name = "RetryError"
  /** Delay before the retry (ms, whole), or `undefined` for the sender's backoff. */
  readonly delay: number | undefined
  constructor(
    message = "retry requested by the handler",
    options?: ErrorOptions & { delay?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.delay = options?.delay === undefined ? undefined : retryDelay("delay", options.delay)
  }
}

/**
 * Thrown by a `Worker`'s handler: retrying cannot help, so dead-letter the message now, with no
 * more attempts, and with this error's message as its `lastError` (BullMQ's
 * `UnrecoverableError`, JetStream's `term`). `ctx.term(reason)` does the same without
 * throwing. Not a `PirateError`: the library never throws it, your handler does.
 *
 * @example
 * ```ts
 * handler: async (order) => {
 *   if (!isValid(order)) throw new UnrecoverableError("invalid order: no customer id")
 *   return charge(order)
 * }
 * ```
 */
export class UnrecoverableError extends Error {
  override name = "UnrecoverableError"
  constructor(message = "terminated by the handler", options?: ErrorOptions) {
    super(message, options)
  }
}

/**
 * Error for a payload or reply of `size` bytes that does not fit in a frame of a receiver whose
 * `maxMessageSize` is `maxMessageSize`: a packed frame puts 4 bytes of length before each one.
 * `what` names it and its receiver, e.g. "a payload for this sender".
 */
export function tooLargeError(what: string, size: number, maxMessageSize: number): PirateError {
  return new PirateError(
    "PIRATE_TOO_LARGE",
    `${what} of ${size} bytes is too large: the limit is ${maxMessageSize - 4} bytes (maxMessageSize ${maxMessageSize}, less 4 bytes of framing)`,
  )
}

/** Error for a call on a closed object. */
export function closedError(what: string): PirateError {
  return new PirateError("PIRATE_CLOSED", `${what} is closed`)
}

/** Error for a call only the active sender of a pair takes. */
export function passiveError(): PirateError {
  return new PirateError(
    "PIRATE_PASSIVE",
    "this sender is not the active one of its pair; wait for 'pair:active' or send to the other",
  )
}

/** Error for an aborted call; `cause` is the signal's reason. */
export function abortedError(signal: AbortSignal): PirateError {
  return new PirateError("PIRATE_ABORTED", "the operation was aborted", { cause: signal.reason })
}

/** Any thrown value as an Error (for "error" events and rejections). */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/**
 * The `code` of a thrown value (a Node.js system error's `EADDRINUSE`, zeromq's `EAGAIN`, a
 * `PirateError`'s `PIRATE_*`, level's `LEVEL_*`), or `undefined` when it has none.
 */
export function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined
  const code = err.code
  return typeof code === "string" ? code : undefined
}

/**
 * Error for an endpoint that cannot be bound because it is in use. `option` names the option
 * that gave it (`bind`, `frontend`, `backend`); `cause` is zeromq's `EADDRINUSE`.
 */
export function addressInUseError(option: string, endpoint: string, cause: unknown): PirateError {
  return new PirateError(
    "PIRATE_ADDRESS_IN_USE",
    `cannot bind '${option}' to ${endpoint}: the address is in use (another process, or another socket of this one, holds it); stop that one or choose another endpoint ("tcp://127.0.0.1:*" picks a free port)`,
    { cause },
  )
}

/** A short printable message of any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return typeof err === "string" ? err : String(err)
}
