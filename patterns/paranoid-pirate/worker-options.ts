/** The public types of `Worker`: options and their defaults, handler context, stats, events. */
import { validateBackoff, type BackoffOptions } from "../../lib/backoff.js"
import { resolveCodec, type Codec, type CodecOption } from "../../lib/codec.js"
import type { DedupeOptions } from "../../lib/journal/dedupe.js"
import { metricsOf, type LatencySummary, type Metric } from "../../lib/metrics.js"
import {
  assertFunction,
  assertNonNegativeInt,
  assertOneOf,
  assertKnownOptions,
  assertPositiveInt,
  describe,
  endpointList,
  stripUndefined,
} from "../../lib/validate.js"
import type { CurveClientOptions } from "../../lib/security.js"
import { DEFAULT_QUEUE, checkQueueName } from "../../lib/headers.js"
import { MAX_WORKER_QUEUES } from "../../lib/protocol.js"

/** What a handler gets besides the payload. */
export interface JobContext {
  /** The message id: stable across redeliveries and sender restarts (use it to deduplicate side effects). */
  id: string
  /**
   * 1 for the first delivery, then one more for each attempt the sender knows failed (a nack, a
   * lost worker, an ack timeout). A delivery cut off by a crash of the sender itself is not
   * counted: after the restart the message comes again with the same number. 1 when a foreign
   * PPP queue sent it.
   */
  attempt: number
  /** The endpoint of the sender this job came from. */
  endpoint: string
  /** The named queue the message was sent to (`"default"` when none was). */
  queue: string
  /**
   * The headers the message was sent with (`send(payload, { headers })`), frozen; `{}` when it
   * had none, or came from a sender or queue that does not carry headers (plain PPP, PPX/1).
   */
  headers: Readonly<Record<string, string>>
  /** Aborted when the worker closes past its `closeTimeout` or the sender is lost: stop early. */
  signal: AbortSignal
  /** Renews the job's ack deadline on the sender (`ackTimeout`), for long jobs. */
  extend(): void
  /**
   * Nacks this attempt when the handler ends, whatever it returns or throws then, and asks the
   * sender to retry the message after `delay` ms instead of its retry backoff (after the backoff
   * when `delay` is absent), like throwing a `RetryError`. The attempt counts against the
   * sender's `maxAttempts`; at the last one the message is dead-lettered with `reason` (default
   * `"retry requested by the handler"`). The first decision of a job wins: a later `retry()` or
   * `term()`, or a call after the handler ended, does nothing. A plain PPP sender or queue has
   * no nack: there it is a failure like any throw, and the delay is not conveyed.
   *
   * @example
   * ```ts
   * if (rateLimited) return ctx.retry({ delay: 5000 })
   * ```
   * @throws TypeError or RangeError when `delay` is not a number of ms from 0 to 86 400 000
   * (rounded up to a whole ms), or `reason` is not a string
   */
  retry(options?: { delay?: number; reason?: string }): void
  /**
   * Dead-letters the message when the handler ends, whatever it returns or throws then, with no
   * more attempts and `reason` as its `lastError` (default `"terminated by the handler"`), like
   * throwing an `UnrecoverableError`. The first decision of a job wins (see {@link retry}). A
   * plain PPP sender or queue has no nack: there it is a failure like any throw (retried).
   *
   * @throws TypeError when `reason` is not a string
   */
  term(reason?: string): void
}

/**
 * Processes one message; its return value is the reply (the ack). Throwing nacks it: a
 * `RetryError` with its delay, an `UnrecoverableError` to the dead letters at once. `ctx.retry()`
 * and `ctx.term()` decide the same without throwing.
 *
 * `T` is the payload type and `R` the reply type (both `unknown` by default). They are a promise
 * the caller makes, checked by nothing at runtime: the codec decodes whatever the sender sent.
 * Validate the payload in the handler if it can come from a sender you do not control.
 */
export type JobHandler<T = unknown, R = unknown> = (payload: T, ctx: JobContext) => R | Promise<R>

/**
 * Options of {@link Worker}. Durations are in ms. `T` is the payload type the handler receives,
 * `R` the type of its reply (see {@link JobHandler}).
 */
export interface WorkerOptions<T = unknown, R = unknown> {
  /** Sender(s) or queue(s) to connect to; the worker keeps an independent session with each. */
  connect: string | string[]
  /** Runs each message. */
  handler: JobHandler<T, R>
  /** Handlers running at once at most. @defaultValue 1 */
  concurrency?: number
  /** Messages each sender may hand out ahead to this worker (its credit). @defaultValue concurrency */
  prefetch?: number
  /** Heartbeat period. @defaultValue 1000 */
  heartbeatInterval?: number
  /** Heartbeats missed before the sender is presumed dead. @defaultValue 3 */
  liveness?: number
  /** Delay before reconnecting after losing a sender. @defaultValue `{ initial: 1000, max: 32000, factor: 2, jitter: 0.2 }` */
  reconnect?: BackoffOptions
  /** Payload codec; must match the sender's. @defaultValue "msgpack" */
  codec?: CodecOption
  /** `"ppx"` announces the extension (batching, nack, credit) and falls back to plain PPP; `"ppp"` speaks plain PPP only. @defaultValue "ppx" */
  protocol?: "ppx" | "ppp"
  /** How long `close()` lets running handlers finish before aborting them. @defaultValue 10000 */
  closeTimeout?: number
  /** Largest inbound ZeroMQ message (bytes). @defaultValue 16 MiB */
  maxMessageSize?: number
  /** Acks sent in one ZeroMQ message at most. @defaultValue 64 */
  maxBatch?: number
  /**
   * Remember completed messages (and their replies) in a LevelDB directory, so that a redelivered
   * message that already completed here is acked with the recorded reply without running the
   * handler again ("effectively once"; see the README for what this does and does not cover).
   * @defaultValue off
   */
  dedupe?: string | DedupeOptions
  /** CURVE encryption and authentication: this worker's key pair and the sender's public key. @defaultValue off */
  curve?: CurveClientOptions
  /**
   * The named queues this worker takes messages of (1 to 256 names), round robin across those
   * with messages ready. A plain PPP worker (`protocol: "ppp"`) takes `"default"` only.
   * @defaultValue ["default"]
   */
  queues?: string[]
}

export const WORKER_DEFAULTS = Object.freeze({
  concurrency: 1,
  heartbeatInterval: 1000,
  liveness: 3,
  reconnect: Object.freeze({ initial: 1000, max: 32_000, factor: 2, jitter: 0.2 }),
  codec: "msgpack" as const,
  protocol: "ppx" as const,
  closeTimeout: 10_000,
  maxMessageSize: 16 * 1024 * 1024,
  maxBatch: 64,
})

/** Every name of {@link WorkerOptions}, to refuse unknown ones. */
const WORKER_OPTIONS = {
  connect: true,
  handler: true,
  concurrency: true,
  prefetch: true,
  heartbeatInterval: true,
  liveness: true,
  reconnect: true,
  codec: true,
  protocol: true,
  closeTimeout: true,
  maxMessageSize: true,
  maxBatch: true,
  dedupe: true,
  curve: true,
  queues: true,
} as const satisfies Record<keyof WorkerOptions, true>

export interface WorkerStats {
  /** Messages received. */
  received: number
  /** Messages acked (handler returned) on a session that was still current. */
  acked: number
  /** Messages nacked (handler threw) or rejected (payload could not be decoded). */
  nacked: number
  /** Results thrown away because their sender session was lost meanwhile. */
  discarded: number
  /** Malformed frames dropped. */
  dropped: number
  /** Handlers running now. */
  running: number
  /** Messages received and waiting for a free handler slot. */
  queued: number
  /** Sessions lost (heartbeat expiry or disconnect). */
  reconnects: number
  /** Redeliveries of completed messages answered from the dedupe store without running the handler. */
  deduplicated: number
  /**
   * VOTEs sent to a sender of a pair: the worker had no live session with an active sender for a
   * liveness window (see docs/pair.md section 5).
   */
  votes: number
  /** Handler run time of successful jobs (ms). */
  handlerLatency: LatencySummary
  sessions: {
    endpoint: string
    connected: boolean
    protocol: "ppp" | "ppx" | "none"
    /**
     * Present while the sender refuses this worker: the `PIRATE_CODEC_MISMATCH` message, which
     * names both codecs. The worker takes no task from it and tries again every `reconnect.max`.
     */
    refused?: string
  }[]
}

export interface WorkerEvents {
  "sender:ready": [{ endpoint: string; protocol: "ppp" | "ppx" }]
  "sender:lost": [{ endpoint: string; reason: string; reconnectIn: number }]
  "job:failed": [{ id: string; attempt: number; error: Error }]
  /** The worker voted for the sender at `endpoint` (no live session with an active sender). */
  "pair:vote": [{ endpoint: string }]
  error: [Error]
}

/** The validated settings a `Worker` runs with. */
export interface WorkerSettings {
  concurrency: number
  prefetch: number
  heartbeatInterval: number
  liveness: number
  reconnect: Required<BackoffOptions>
  protocol: "ppx" | "ppp"
  closeTimeout: number
  maxMessageSize: number
  maxBatch: number
  /** The queues announced in READY; undefined: the default queue only (announced as nothing). */
  queues: string[] | undefined
}

/** Validates a worker's options (TypeError/RangeError naming the option) and fills defaults. */
export function resolveWorker<T, R>(
  options: WorkerOptions<T, R>,
): {
  endpoints: string[]
  handler: JobHandler
  codec: Codec
  settings: WorkerSettings
} {
  if (typeof options !== "object" || (options as unknown) === null)
    throw new TypeError("Worker options must be an object")
  assertKnownOptions("Worker", options, WORKER_OPTIONS)
  const endpoints = endpointList("connect", options.connect)
  assertFunction("handler", options.handler)
  const o = { ...WORKER_DEFAULTS, ...stripUndefined(options) }
  const codec = resolveCodec(o.codec)
  assertPositiveInt("concurrency", o.concurrency)
  const prefetch = o.prefetch ?? o.concurrency
  assertPositiveInt("prefetch", prefetch)
  assertPositiveInt("heartbeatInterval", o.heartbeatInterval)
  assertPositiveInt("liveness", o.liveness)
  assertOneOf("protocol", o.protocol, ["ppx", "ppp"] as const)
  assertNonNegativeInt("closeTimeout", o.closeTimeout)
  assertPositiveInt("maxMessageSize", o.maxMessageSize)
  assertPositiveInt("maxBatch", o.maxBatch)
  const queues = workerQueues(options.queues, o.protocol)
  return {
    endpoints,
    // The payload types are the caller's promise: the jobs run the handler on what the codec decodes.
    handler: options.handler as JobHandler,
    codec,
    settings: {
      concurrency: o.concurrency,
      prefetch,
      heartbeatInterval: o.heartbeatInterval,
      liveness: o.liveness,
      reconnect: validateBackoff("reconnect", o.reconnect),
      protocol: o.protocol,
      closeTimeout: o.closeTimeout,
      maxMessageSize: o.maxMessageSize,
      maxBatch: o.maxBatch,
      queues,
    },
  }
}

/**
 * The `queues` option: 1 to 256 distinct queue names; undefined for the default queue alone.
 * @throws TypeError/RangeError naming the option
 */
function workerQueues(raw: unknown, protocol: "ppx" | "ppp"): string[] | undefined {
  if (raw === undefined) return undefined
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_WORKER_QUEUES)
    throw new TypeError(
      `'queues' must be an array of 1 to ${MAX_WORKER_QUEUES} queue names, got ${describe(raw)}`,
    )
  const names = new Set<string>()
  for (const [i, q] of raw.entries()) {
    const name = checkQueueName(q, `queues[${i}]`)
    if (names.has(name)) throw new TypeError(`'queues' names ${JSON.stringify(name)} twice`)
    names.add(name)
  }
  if (names.size === 1 && names.has(DEFAULT_QUEUE)) return undefined
  if (protocol === "ppp")
    throw new TypeError(
      `a plain PPP worker (protocol "ppp") takes the "${DEFAULT_QUEUE}" queue only; leave 'queues' out or use protocol "ppx"`,
    )
  return [...names]
}

/** A worker's stats as metrics for the Prometheus text format. */
export function workerMetrics(s: WorkerStats): Metric[] {
  const { counter: c, gauge: g, summary } = metricsOf("pirate_worker")
  return [
    c("received", "Messages received.", s.received),
    c("acked", "Messages acked.", s.acked),
    c("nacked", "Messages nacked or rejected.", s.nacked),
    c("discarded", "Results discarded because their sender session was lost.", s.discarded),
    c("dropped", "Malformed frames dropped.", s.dropped),
    c("reconnects", "Sender sessions lost and reconnected.", s.reconnects),
    c("deduplicated", "Redeliveries answered from the dedupe store.", s.deduplicated),
    c("votes", "Votes sent for a sender of a pair.", s.votes),
    g("running", "Handlers running.", s.running),
    g("queued", "Messages waiting for a handler slot.", s.queued),
    g(
      "senders_connected",
      "Sender sessions connected.",
      s.sessions.filter((x) => x.connected).length,
    ),
    summary("handler_seconds", "Handler run time of successful jobs.", s.handlerLatency),
  ]
}
