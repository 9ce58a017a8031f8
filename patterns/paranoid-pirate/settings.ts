import { validateBackoff, type BackoffOptions } from "../../lib/backoff.js"
import type { CodecOption } from "../../lib/codec.js"
import { LevelJournal } from "../../lib/journal/level.js"
import { MemoryJournal } from "../../lib/journal/memory.js"
import type { Durability, Journal } from "../../lib/journal/types.js"
import {
  assertNonNegativeInt,
  assertOneOf,
  assertPositiveInt,
  stripUndefined,
} from "../../lib/validate.js"
import { validateCurveServer, type CurveServerOptions } from "../../lib/security.js"
import type { DispatcherSettings } from "./core/index.js"

/**
 * Options of `Sender`. Durations are in ms. All but `bind` and `codec` are the queue core's,
 * which `ParanoidPirateQueueOptions` share (declared here, beside `SENDER_DEFAULTS`, so that the
 * published types name no internal interface).
 */
export interface SenderOptions {
  /** Endpoint to bind, e.g. `"tcp://127.0.0.1:5556"` or `"tcp://*:5556"`; `:*` picks a free port. */
  bind: string
  /** Payload codec: `"msgpack"`, `"raw"` (Buffers) or your own. @defaultValue "msgpack" */
  codec?: CodecOption
  /** Journal directory (a `LevelJournal` there) or a `Journal`; without it messages live in memory only. */
  journal?: string | Journal
  /**
   * When a message counts as accepted. `"replicated"` (a `Sender` with `pair` only): once written
   * on both senders of the pair (see docs/pair.md).
   * @defaultValue `"os"` with a persistent journal, `"memory"` without
   */
  durability?: Durability | "replicated"
  /** Heartbeat period towards plain PPP workers (PPX workers announce their own). @defaultValue 1000 */
  heartbeatInterval?: number
  /** Heartbeats a worker may miss before it is lost. @defaultValue 3 */
  liveness?: number
  /** Attempts before a message is dead-lettered. @defaultValue 5 */
  maxAttempts?: number
  /** Delay between a failed attempt and the next. @defaultValue `{ initial: 500, max: 30000, factor: 2, jitter: 0.2 }` */
  retryBackoff?: BackoffOptions
  /** Redeliver a message its (live) worker has not acked for this long; 0 = never. @defaultValue 0 */
  ackTimeout?: number
  /**
   * Messages kept in memory at most (ready, in flight, delayed). With a persistent journal, sends
   * beyond it wait on disk (the backlog) and are paged in as it frees; without one, and for
   * `request()`, producers wait while it is full. @defaultValue 10000
   */
  window?: number
  /**
   * Payload bytes kept in memory at most (ready, in flight, delayed, and sends being written as
   * backlog), beside `window`: a window holding nothing still takes one message however large.
   * Infinity: no limit in bytes. @defaultValue 64 MiB
   */
  windowBytes?: number
  /**
   * Messages waiting on disk for the window at most (persistent journal); `send()` waits
   * (backpressure) while the backlog is this long. @defaultValue Infinity
   */
  maxBacklog?: number
  /** Payload bytes waiting on disk for the window at most; `send()` waits beyond. @defaultValue Infinity */
  maxBacklogBytes?: number
  /** Messages sent to a worker in one ZeroMQ message at most (PPX workers). @defaultValue 64 */
  maxBatch?: number
  /** Largest inbound ZeroMQ message (bytes); larger ones are dropped and their peer disconnected. @defaultValue 16 MiB */
  maxMessageSize?: number
  /** How long a send to a worker may block before the worker is presumed unreachable. @defaultValue 1000 */
  sendTimeout?: number
  /** Random source for retry jitter (tests). @defaultValue Math.random */
  random?: () => number
  /** CURVE encryption and authentication: this side's key pair and the workers' (clients') allowed public keys. @defaultValue off */
  curve?: CurveServerOptions
  /**
   * What a dead letter does to the messages behind it on its `key`: `"continue"` lets the next one
   * go; `"hold"` keeps them waiting until the dead letter is replayed (also across restarts).
   * @defaultValue "continue"
   */
  keyOnDead?: "continue" | "hold"
  /**
   * How long a send id (`send(payload, { id })`) is remembered after its message is acked (ms): a
   * send with that id within it enqueues nothing. Kept in the journal. 0: forgotten at the ack.
   * @defaultValue 600000 (10 minutes)
   */
  dedupeWindow?: number
  /**
   * Makes this sender one of a high-availability pair (Binary Star): two senders on two machines,
   * one active, the other holding a replica of its journal and taking over when it is lost.
   * See docs/pair.md. @defaultValue none
   */
  pair?: SenderPairOptions
}

/** The `pair` option of `Sender`. */
export interface SenderPairOptions {
  /** Which node this is: the primary wins a cold start and breaks ties. */
  role: "primary" | "backup"
  /** Where this node's pair socket binds (`tcp://host:port`; `:*` picks a port: `sender.pairEndpoint`). */
  bind: string
  /** The other node's `pair.bind` address. */
  peer: string
  /** Silence (ms) after which the peer is presumed dead. @defaultValue heartbeatInterval × liveness */
  timeout?: number
  /** Both sides fsync replicated writes. @defaultValue false */
  sync?: boolean
  /**
   * With no caught-up passive, `"wait"` keeps `replicated` sends waiting (backpressure); `"local"`
   * resolves them once written here (weaker: `stats().pair.replicated` is false meanwhile).
   * @defaultValue "wait"
   */
  whenAlone?: "wait" | "local"
}

/** Options shared by `Sender` and `ParanoidPirateQueue` (the queue core). */
export type CoreOptions = Omit<SenderOptions, "bind" | "codec" | "pair" | "durability"> & {
  durability?: Durability
}

/** Every name of {@link CoreOptions}, to refuse unknown ones (see `assertKnownOptions`). */
export const CORE_OPTIONS = {
  journal: true,
  durability: true,
  heartbeatInterval: true,
  liveness: true,
  maxAttempts: true,
  retryBackoff: true,
  ackTimeout: true,
  window: true,
  windowBytes: true,
  maxBacklog: true,
  maxBacklogBytes: true,
  maxBatch: true,
  maxMessageSize: true,
  sendTimeout: true,
  random: true,
  curve: true,
  keyOnDead: true,
  dedupeWindow: true,
} as const satisfies Record<keyof CoreOptions, true>

/** Defaults of the queue core's options (`Sender`, `ParanoidPirateQueue`). */
export const SENDER_DEFAULTS = Object.freeze({
  heartbeatInterval: 1000,
  liveness: 3,
  maxAttempts: 5,
  retryBackoff: Object.freeze({ initial: 500, max: 30_000, factor: 2, jitter: 0.2 }),
  ackTimeout: 0,
  window: 10_000,
  windowBytes: 64 * 1024 * 1024,
  maxBacklog: Infinity,
  maxBacklogBytes: Infinity,
  maxBatch: 64,
  maxMessageSize: 16 * 1024 * 1024,
  sendTimeout: 1000,
  keyOnDead: "continue",
  dedupeWindow: 600_000,
})

/** Validates core options (TypeError/RangeError naming the option) and opens no journal yet. */
export function resolveCore(options: CoreOptions): {
  journal: Journal
  settings: DispatcherSettings
} {
  let journal: Journal
  if (options.journal === undefined) journal = new MemoryJournal()
  else if (typeof options.journal === "string") {
    if (options.journal === "")
      throw new TypeError("'journal' must be a directory path or a Journal, got \"\"")
    journal = new LevelJournal(options.journal)
  } else if (typeof options.journal === "object" && typeof options.journal.append === "function")
    journal = options.journal
  else throw new TypeError("'journal' must be a directory path or a Journal")
  const o = { ...SENDER_DEFAULTS, ...stripUndefined(options) }
  const durability = o.durability ?? (journal.persistent ? "os" : "memory")
  assertOneOf("durability", durability, ["memory", "os", "fsync"] as const)
  assertPositiveInt("heartbeatInterval", o.heartbeatInterval)
  assertPositiveInt("liveness", o.liveness)
  assertPositiveInt("maxAttempts", o.maxAttempts)
  assertNonNegativeInt("ackTimeout", o.ackTimeout)
  assertPositiveInt("window", o.window)
  assertLimit("windowBytes", o.windowBytes)
  assertLimit("maxBacklog", o.maxBacklog)
  assertLimit("maxBacklogBytes", o.maxBacklogBytes)
  assertPositiveInt("maxBatch", o.maxBatch)
  assertPositiveInt("maxMessageSize", o.maxMessageSize)
  assertPositiveInt("sendTimeout", o.sendTimeout)
  assertOneOf("keyOnDead", o.keyOnDead, ["continue", "hold"] as const)
  assertNonNegativeInt("dedupeWindow", o.dedupeWindow)
  if (o.random !== undefined && typeof o.random !== "function")
    throw new TypeError("'random' must be a function")
  return {
    journal,
    settings: {
      heartbeatInterval: o.heartbeatInterval,
      liveness: o.liveness,
      maxAttempts: o.maxAttempts,
      retryBackoff: validateBackoff("retryBackoff", o.retryBackoff),
      ackTimeout: o.ackTimeout,
      window: o.window,
      windowBytes: o.windowBytes,
      maxBacklog: o.maxBacklog,
      maxBacklogBytes: o.maxBacklogBytes,
      maxBatch: o.maxBatch,
      durability,
      maxMessageSize: o.maxMessageSize,
      sendTimeout: o.sendTimeout,
      random: o.random ?? Math.random,
      curve: options.curve === undefined ? undefined : validateCurveServer(options.curve),
      keyOnDead: o.keyOnDead,
      dedupeWindow: o.dedupeWindow,
    },
  }
}

/** A positive integer or `Infinity` (no limit). */
function assertLimit(name: string, value: unknown): asserts value is number {
  if (value !== Infinity) assertPositiveInt(name, value)
}
