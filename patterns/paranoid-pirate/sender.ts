import { EventEmitter } from "node:events"
import { codecName, encodeBody, resolveCodec, type Codec } from "../../lib/codec.js"
import {
  PirateError,
  RequestTimeoutError,
  abortedError,
  passiveError,
  toError,
} from "../../lib/errors.js"
import type { DeadLetter, Journal } from "../../lib/journal/types.js"
import { isMessageId } from "../../lib/journal/ids.js"
import { Lifecycle, type Status } from "../../lib/lifecycle.js"
import { renderPrometheus } from "../../lib/metrics.js"
import {
  assertKnownOptions,
  assertPositiveInt,
  describe,
  singleEndpoint,
} from "../../lib/validate.js"
import type { Schedule } from "./core/message.js"
import { resolveSchedule, type ScheduleOptions } from "./schedule-options.js"
import { checkHeaders, checkQueueName } from "../../lib/headers.js"
import { withTraceContext } from "../../lib/trace.js"
import {
  Dispatcher,
  forward,
  internals,
  statsMetrics,
  type DispatcherSettings,
  type NamedQueueStats,
  type SenderEvents,
  type SenderStats,
  type WorkerInfo,
} from "./core/index.js"
import { PairNode, resolvePair, type ResolvedPair } from "./pair-node.js"
import {
  CORE_OPTIONS,
  SENDER_DEFAULTS,
  resolveCore,
  type SenderOptions,
  type SenderPairOptions,
} from "./settings.js"

export { SENDER_DEFAULTS, type SenderOptions, type SenderPairOptions }

/** Options of `send()` and `request()`. */
export interface SendOptions {
  /** Stops waiting (for room in the window, or for the reply). */
  signal?: AbortSignal
  /**
   * Do not dispatch the message before this many ms from now (its first attempt only; retries
   * keep their backoff). With a persistent journal it waits there, not in memory.
   */
  delay?: number
  /** Do not dispatch the message before this time (epoch ms); exclusive with `delay`. */
  notBefore?: number
  /**
   * Time to live (ms from now): a message not acked by then is not dispatched again and goes to
   * the dead letters with the error "expired" (`message:expired`). One in flight is left to finish.
   */
  ttl?: number
  /** The time to live as a time (epoch ms); exclusive with `ttl`. */
  expiresAt?: number
  /**
   * 0–9, higher first: among the messages in memory (the window) that are ready, a higher
   * priority is dispatched first; equal priorities keep send order. @defaultValue 4
   */
  priority?: number
  /**
   * Messages with the same key are processed one at a time, in send order, across all workers;
   * other keys flow in parallel. A failed message blocks its key until it is acked or
   * dead-lettered (see the `keyOnDead` option).
   */
  key?: string
  /**
   * A send id of the caller's choosing (at most 256 bytes): a send with an id whose message is
   * pending, in flight, dead, or was acked within `dedupeWindow` enqueues nothing and resolves with
   * that message's id. Kept in the journal with the message, so after a crash the producer can
   * send again what it is unsure of.
   */
  id?: string
  /**
   * The named queue (1 to 255 bytes): only workers that take it (their `queues` option) get the
   * message; one nobody connected takes waits, durably. @defaultValue "default"
   */
  queue?: string
  /**
   * String headers carried with the message (journaled, delivered as `ctx.headers`; at most 64
   * entries and 64 KiB, counted against `maxMessageSize`). With `@opentelemetry/api` installed and
   * a span active, `traceparent`/`tracestate` are added (see docs/tracing.md).
   */
  headers?: Readonly<Record<string, string>>
}

/** Options of `request()`: those of `send()` but `id` (a request lives in memory only). */
export interface RequestToWorkerOptions extends Omit<SendOptions, "id"> {
  /** Give up waiting for the reply after this long (ms); the message is cancelled if not yet delivered. */
  timeout?: number
}

export type { SenderEvents, SenderStats, WorkerInfo }

const SENDER_OPTIONS = {
  ...CORE_OPTIONS,
  bind: true,
  codec: true,
  pair: true,
} as const satisfies Record<keyof SenderOptions, true>
/** The options of both `send()` and `request()`. */
const SHARED_SEND_OPTIONS = {
  signal: true,
  delay: true,
  notBefore: true,
  ttl: true,
  expiresAt: true,
  priority: true,
  key: true,
  queue: true,
  headers: true,
} as const satisfies Record<Exclude<keyof SendOptions, "id">, true>
const SEND_OPTIONS = { ...SHARED_SEND_OPTIONS, id: true } as const satisfies Record<
  keyof SendOptions,
  true
>
const REQUEST_OPTIONS = { ...SHARED_SEND_OPTIONS, timeout: true } as const satisfies Record<
  keyof RequestToWorkerOptions,
  true
>

/**
 * The brokerless queue inside a producer process. Binds a ROUTER that workers connect to, keeps
 * every unacknowledged message in its journal and hands messages to ready workers with credit.
 * A message is done only when a worker acks it; a lost worker's messages go to other workers.
 *
 * `T` is the type of the payloads it sends and `R` the type of the replies `request()` resolves
 * with (both `unknown` by default). They are a promise the caller makes, not checked at runtime:
 * a reply is whatever the worker's handler returned, as the codec decodes it.
 *
 * @example
 * ```ts
 * const sender = await Sender.open<{ task: string; file: string }>({
 *   bind: "tcp://127.0.0.1:5556",
 *   journal: "./journal",
 * })
 * const id = await sender.send({ task: "resize", file: "a.png" })  // resolves once journaled
 * await sender.drained()
 * await sender.close()
 * ```
 */
export class Sender<T = unknown, R = unknown> extends EventEmitter<SenderEvents> {
  readonly #bind: string
  readonly #codec: Codec
  readonly #journal: Journal
  readonly #settings: DispatcherSettings
  readonly #life = new Lifecycle("sender")
  #core: Dispatcher | undefined
  /** The `pair` option, checked; `#node` once open. */
  readonly #pair: { options: ResolvedPair; replicated: boolean } | undefined
  #node: PairNode | undefined

  /**
   * Validates options; does no I/O.
   * @throws TypeError or RangeError naming a wrong option (an unknown one too, with the closest
   *   known name).
   */
  constructor(options: SenderOptions) {
    super()
    if (typeof options !== "object" || options === null)
      throw new TypeError("Sender options must be an object")
    assertKnownOptions("Sender", options, SENDER_OPTIONS)
    this.#bind = singleEndpoint("bind", options.bind)
    this.#codec = resolveCodec(options.codec)
    const { pair, durability, ...core } = options
    const replicated = durability === "replicated"
    if (replicated && pair === undefined)
      throw new TypeError(
        "durability \"replicated\" needs the 'pair' option (the other sender to replicate to)",
      )
    const { journal, settings } = resolveCore({
      ...core,
      // Locally, a replicated write is an `os` one (`fsync` with `pair.sync`).
      ...(replicated
        ? { durability: pair?.sync === true ? "fsync" : "os" }
        : durability === undefined
          ? {}
          : { durability }),
    })
    this.#journal = journal
    if (pair !== undefined) this.#pair = { options: resolvePair(pair, settings), replicated }
    // Stated in WELCOME: a worker whose codec differs is refused (PIRATE_CODEC_MISMATCH).
    this.#settings = { ...settings, codec: codecName(this.#codec) }
  }

  /** Creates and opens a sender. */
  static async open<T = unknown, R = unknown>(options: SenderOptions): Promise<Sender<T, R>> {
    const sender = new Sender<T, R>(options)
    await sender.open()
    return sender
  }

  /** `"new" | "opening" | "open" | "closing" | "closed"`. */
  get status(): Status {
    return this.#life.status
  }

  /**
   * The bound address, with the port resolved (`tcp://127.0.0.1:*` → `tcp://127.0.0.1:40123`);
   * still readable after `close()`.
   * @throws `PIRATE_NOT_OPEN` before {@link open} has resolved.
   */
  get endpoint(): string {
    const endpoint = this.#core?.endpoint
    if (endpoint === undefined)
      throw new PirateError("PIRATE_NOT_OPEN", "the sender has no endpoint until open() resolves")
    return endpoint
  }

  /**
   * `"active"` while this sender takes sends and dispatches; `"passive"` for the other sender of a
   * pair (also while a pair's sender has not decided yet). A sender without `pair` is always
   * `"active"` once open.
   */
  get state(): "active" | "passive" {
    return this.#node === undefined ? "active" : this.#node.state
  }

  /**
   * The bound address of the pair socket (`pair.bind` with its port resolved).
   * @throws `PIRATE_NOT_OPEN` before {@link open} has resolved, or without `pair`.
   */
  get pairEndpoint(): string {
    const endpoint = this.#node?.pairEndpoint
    if (endpoint === undefined)
      throw new PirateError(
        "PIRATE_NOT_OPEN",
        "the sender has no pair endpoint (not open, or no 'pair')",
      )
    return endpoint
  }

  /** The journal in use. */
  get journal(): Journal {
    return this.#journal
  }

  /**
   * Opens the journal (redelivering what it holds), then binds.
   * @throws PirateError `PIRATE_JOURNAL_LOCKED` when another process holds the journal.
   */
  open(): Promise<void> {
    return this.#life.open(async () => {
      if (this.#pair !== undefined) {
        const node = new PairNode(
          this.#settings,
          this.#journal,
          this.#bind,
          this.#pair.options,
          this.#pair.replicated,
          {
            adopt: (core) => {
              forward(core, this)
              this.#core = core
            },
            active: (event) => this.emit("pair:active", event),
            passive: (event) => this.emit("pair:passive", event),
            error: (err) => {
              if (this.listenerCount("error") > 0) this.emit("error", err)
            },
          },
        )
        await node.open()
        this.#node = node
        return
      }
      const core = new Dispatcher("sender", this.#settings, this.#journal)
      forward(core, this)
      await core.open(this.#bind)
      this.#core = core
    })
  }

  /**
   * Stops: rejects waiting calls with `PIRATE_CLOSED`, tells PPX workers goodbye, flushes the
   * journal and closes it. Unacked messages stay in a persistent journal for the next open.
   */
  close(): Promise<void> {
    return this.#life.close(async () => {
      await (this.#node ?? this.#core)?.close()
    })
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /**
   * Sends a message to some worker, at least once. With a persistent journal it never waits for
   * the in-memory window: what does not fit waits on disk (the backlog) and is delivered in send
   * order. It waits only at `maxBacklog`/`maxBacklogBytes` (or, without a persistent journal, at
   * the window): see `stats().waiting` and the `backpressure` event.
   * @returns the message id, once the message is as durable as `durability` says.
   * @throws PirateError `PIRATE_CLOSED`, `PIRATE_ABORTED`, `PIRATE_JOURNAL_FULL` (disk full: the
   *   message was not kept; retry once space is freed), `PIRATE_JOURNAL_IO`, `PIRATE_TOO_LARGE`
   *   (the encoded payload is over `maxMessageSize` less 4 bytes), `PIRATE_ENCODE` (the codec
   *   cannot encode the payload: a circular reference, a symbol…; `cause` is the codec's error);
   *   TypeError for an unknown option.
   */
  send(payload: T, options: SendOptions = {}): Promise<string> {
    let frame: Buffer
    let core: Dispatcher
    let schedule: Schedule | undefined
    try {
      assertKnownOptions("send()", options, SEND_OPTIONS)
      schedule = resolveSchedule(traced(options))
      core = this.#active()
      frame = encodeBody(this.#codec, payload)
    } catch (err) {
      return Promise.reject(toError(err))
    }
    return core.send(frame, options.signal, schedule)
  }

  /**
   * Removes a message that has not been dispatched yet: one due later (`delay`), ready, waiting
   * for its retry, behind its key, or waiting on disk. Resolves true when it was removed, false
   * when it is unknown, in flight or already done. A `request()` it cancels rejects with
   * `PIRATE_ABORTED`.
   */
  cancel(id: string): Promise<boolean> {
    try {
      if (typeof id !== "string") throw new TypeError(`'id' must be a string, got ${describe(id)}`)
      const core = this.#active()
      return isMessageId(id) ? core.cancel(id) : Promise.resolve(false) // no message has it
    } catch (err) {
      return Promise.reject(toError(err))
    }
  }

  /**
   * Sends a message and resolves with the worker's reply. Requests are kept in memory only (their
   * caller would not survive a restart either) and wait for room in the window; they are still
   * redelivered if a worker is lost. `timeout` covers the whole wait, for room and for the reply.
   * @throws PirateError `PIRATE_TIMEOUT` (a {@link RequestTimeoutError}), `PIRATE_ABORTED`,
   *   `PIRATE_CLOSED`, `PIRATE_DEAD_LETTER`, `PIRATE_DECODE`, `PIRATE_TOO_LARGE`,
   *   `PIRATE_ENCODE`; TypeError for an unknown option.
   */
  async request(payload: T, options: RequestToWorkerOptions = {}): Promise<R> {
    assertKnownOptions("request()", options, REQUEST_OPTIONS)
    const schedule = resolveSchedule(traced(options))
    const core = this.#active()
    const frame = encodeBody(this.#codec, payload)
    const tooLarge = core.tooLarge(frame, schedule?.headers)
    if (tooLarge) throw tooLarge
    const { signal, timeout } = options
    if (timeout !== undefined) assertPositiveInt("timeout", timeout)
    if (signal?.aborted) throw abortedError(signal)
    // One signal for both waits: the caller's abort or the timeout, whichever comes first.
    const stop = new AbortController()
    const timedOut = (ms: number): RequestTimeoutError =>
      new RequestTimeoutError([this.endpoint], 1, ms, {
        message: `no reply from a worker of the sender at ${this.endpoint} within ${ms} ms; are workers connected, and is the handler that slow?`,
      })
    const timer =
      timeout === undefined ? undefined : setTimeout(() => stop.abort(timedOut(timeout)), timeout)
    const onAbort = (): void => stop.abort(abortedError(signal as AbortSignal))
    signal?.addEventListener("abort", onAbort, { once: true })
    let id: string | undefined
    try {
      const room = core.reserve(frame.length, stop.signal)
      if (room) await room
      const reply = new Promise<Buffer>((resolve, reject) => {
        id = core.submit(frame, { durable: false, waiter: { resolve, reject }, schedule }).id
      })
      const stopped = new Promise<never>((_, reject) => {
        const fail = (): void => reject(toError(stop.signal.reason))
        if (stop.signal.aborted) fail()
        else stop.signal.addEventListener("abort", fail, { once: true })
      })
      return this.#codec.decode(await Promise.race([reply, stopped])) as R
    } catch (err) {
      if (stop.signal.aborted) {
        if (id !== undefined) core.cancelRequest(id)
        throw toError(stop.signal.reason)
      }
      throw err
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener("abort", onAbort)
      stop.abort() // lets go of the listeners on it
    }
  }

  /**
   * Resolves when nothing is ready, delayed, in flight or waiting on disk.
   * @throws PirateError `PIRATE_CLOSED` when the sender closes first with messages pending,
   *   `PIRATE_ABORTED` when `signal` fires.
   */
  drained(options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      return this.#active().drained(options.signal)
    } catch (err) {
      return Promise.reject(toError(err))
    }
  }

  /**
   * Counters and gauges; after `close()`, the final figures. With `{ queue }`, that named queue's
   * figures only (all 0 for a queue the sender has not seen).
   */
  stats(): SenderStats
  stats(options: { queue: string }): NamedQueueStats
  stats(options?: { queue: string }): SenderStats | NamedQueueStats {
    if (options !== undefined) assertKnownOptions("stats()", options, { queue: true })
    const queue = options === undefined ? undefined : checkQueueName(options.queue)
    const core = this.#core && this.status === "closed" ? this.#core : this.#open()
    if (queue !== undefined) return core.queueStats(queue)
    const stats = core.stats()
    if (this.#node !== undefined) stats.pair = this.#node.stats()
    return stats
  }

  /**
   * The stats in the Prometheus text exposition format, for scraping (see `serveMetrics` in
   * `zeromq-pirate/lib`, or `pirate queue --metrics-port`).
   */
  metrics(labels: Record<string, string> = {}): string {
    this.#open()
    return renderPrometheus(statsMetrics("pirate_sender", this.stats()), labels)
  }

  /** Connected workers and what each holds. */
  workers(): WorkerInfo[] {
    return this.#open().workers()
  }

  /** Dead letters (oldest first), with their last error and attempts. */
  async deadLetters(options: { after?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    this.#open()
    await this.#core?.flushJournal()
    return this.#journal.dead(options)
  }

  /** Puts dead letters back in the queue with their attempts reset. Resolves with the ids replayed. */
  async replay(ids: readonly string[]): Promise<string[]> {
    const core = this.#active()
    await core.flushJournal()
    // In a pair, through the journal that streams the change to the passive.
    const entries = await (this.#node?.journal ?? this.#journal).replay(ids)
    core.requeueReplayed(entries)
    return entries.map((e) => e.id)
  }

  /** Decodes a payload with this sender's codec (for dead letters): typed `T`, not checked. */
  decode(payload: Buffer): T {
    return this.#codec.decode(payload) as T
  }

  /**
   * Sizes of the core's internal structures (tests of bounded memory); not a public API.
   * @internal
   */
  [internals](): Record<string, number> {
    return (this.#core as Dispatcher)[internals]()
  }

  #open(): Dispatcher {
    this.#life.assertOpen()
    return this.#core as Dispatcher
  }

  /** The core, for the calls only an active sender takes (`PIRATE_PASSIVE` on a pair's other). */
  #active(): Dispatcher {
    const core = this.#open()
    if (this.#node !== undefined && this.#node.state !== "active") throw passiveError()
    return core
  }
}

/**
 * The send's options with the active span's trace context added to its headers (the same object
 * when no span is active, or without `@opentelemetry/api`).
 */
function traced<O extends ScheduleOptions>(options: O): O {
  const own: unknown = options.headers
  // Not an object: resolveSchedule() refuses it as it is.
  if (own !== undefined && (typeof own !== "object" || own === null)) return options
  const headers = withTraceContext(options.headers)
  if (headers === options.headers) return options
  // The caller's headers are checked as given: the copy that carries the trace context would
  // turn an array or a Map into a plain object (resolveSchedule() checks the copy).
  if (own !== undefined) checkHeaders(own)
  return { ...options, headers }
}
