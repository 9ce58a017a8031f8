import { EventEmitter } from "node:events"
import { Router } from "zeromq"
import { debug } from "../../lib/debug.js"
import { PirateError, errorCode, errorMessage, toError } from "../../lib/errors.js"
import { Lifecycle, type Status } from "../../lib/lifecycle.js"
import { metricsOf, renderPrometheus } from "../../lib/metrics.js"
import {
  FRAME_EMPTY,
  LPX_ERROR,
  LPX_OK,
  decodeRequestHeader,
  decodeRequestMeta,
  encodeRemoteError,
  encodeReplyStatus,
} from "../../lib/protocol.js"
import { SocketWriter, bindRetrying } from "../../lib/writer.js"
import { applyCurveServer } from "../../lib/security.js"
import { assertKnownOptions, singleEndpoint } from "../../lib/validate.js"
import {
  Dispatcher,
  forward,
  type DispatcherSettings,
  type SenderEvents,
  type SenderStats,
  type Waiter,
  type WorkerInfo,
} from "./core/index.js"
import type { Schedule } from "./core/message.js"
import { CORE_OPTIONS, SENDER_DEFAULTS, resolveCore, type SenderOptions } from "./settings.js"
import { resolveSchedule } from "./schedule-options.js"
import type { Durability, Journal, JournalEntry } from "../../lib/journal/types.js"
import { decodeRequestRecord, encodeRequestRecord } from "../../lib/request-record.js"

/**
 * Options of {@link ParanoidPirateQueue}. Durations are in ms. Beside its two endpoints it takes
 * the options of `Sender` but `bind`, `codec` and `pair` (the queue passes payloads through
 * untouched), and `durability` without `"replicated"`.
 */
export interface ParanoidPirateQueueOptions extends Omit<
  SenderOptions,
  "bind" | "codec" | "pair" | "durability"
> {
  /** When a request counts as accepted. @defaultValue `"os"` with a persistent journal, `"memory"` without */
  durability?: Durability
  /** Endpoint for clients (Lazy Pirate clients, REQ sockets). */
  frontend: string
  /** Endpoint for workers. */
  backend: string
}

/** Defaults of the queue's options: the same as the sender's. */
export const QUEUE_DEFAULTS = SENDER_DEFAULTS

/** Events of a {@link ParanoidPirateQueue}: those of `Sender`, from the same core. */
export type ParanoidPirateQueueEvents = SenderEvents

/** A snapshot of a {@link ParanoidPirateQueue}'s counters: the sender's, and its clients'. */
export interface QueueStats extends SenderStats {
  /** Requests received from clients. */
  requests: number
  /** Replies sent to clients. */
  replies: number
  /** Retries of a request still in flight, answered by the first run. */
  joined: number
  /** Malformed client requests dropped. */
  malformed: number
}

const QUEUE_OPTIONS = {
  ...CORE_OPTIONS,
  frontend: true,
  backend: true,
} as const satisfies Record<keyof ParanoidPirateQueueOptions, true>

const OK_STATUS = encodeReplyStatus(LPX_OK)
const ERROR_STATUS = encodeReplyStatus(LPX_ERROR)

interface Pending {
  /**
   * Where the reply goes: the latest client socket that asked (Lazy Pirate retries from a new
   * one); none yet for a request recovered from the journal after a restart.
   */
  client: Buffer | undefined
  framed: boolean
  /** Recovered from the journal: its reply is kept a while for a retry that comes late. */
  recovered: boolean
}

function notBound(side: "frontend" | "backend"): PirateError {
  return new PirateError(
    "PIRATE_NOT_OPEN",
    `the queue has no ${side} endpoint until open() resolves`,
  )
}

/** How long the reply to a recovered request waits for its client's retry (ms). */
const RECOVERED_REPLY_TTL = 60_000

/**
 * The Guide's Paranoid Pirate queue as a standalone process, on the same core as `Sender`: a
 * ROUTER frontend for Lazy Pirate clients and a ROUTER backend for workers. Unlike the Guide's
 * ppqueue, a request whose worker dies is requeued for another worker, not lost.
 *
 * @example
 * ```ts
 * const queue = await ParanoidPirateQueue.open({ frontend: "tcp://*:5555", backend: "tcp://*:5556" })
 * ```
 */
export class ParanoidPirateQueue extends EventEmitter<ParanoidPirateQueueEvents> {
  readonly #frontendBind: string
  readonly #backendBind: string
  readonly #journal: Journal
  readonly #settings: DispatcherSettings
  readonly #life = new Lifecycle("queue")
  #core: Dispatcher | undefined
  #frontend: Router | undefined
  #writer: SocketWriter | undefined
  #frontendEndpoint: string | undefined
  #unregisterCurve: (() => void) | undefined
  /** Requests in flight by their Lazy Pirate request id. */
  readonly #byRequestId = new Map<string, Pending>()
  /**
   * Replies to requests recovered from the journal, by request id, for a client's retry that
   * comes after the reply (in insertion order, which is expiry order).
   */
  readonly #recoveredReplies = new Map<string, { frames: Buffer[]; expires: number }>()
  readonly #counts = { requests: 0, replies: 0, joined: 0, malformed: 0 }

  constructor(options: ParanoidPirateQueueOptions) {
    super()
    if (typeof options !== "object" || options === null)
      throw new TypeError("ParanoidPirateQueue options must be an object")
    assertKnownOptions("ParanoidPirateQueue", options, QUEUE_OPTIONS)
    this.#frontendBind = singleEndpoint("frontend", options.frontend)
    this.#backendBind = singleEndpoint("backend", options.backend)
    const { journal, settings } = resolveCore(options)
    this.#journal = journal
    this.#settings = settings
  }

  static async open(options: ParanoidPirateQueueOptions): Promise<ParanoidPirateQueue> {
    const queue = new ParanoidPirateQueue(options)
    await queue.open()
    return queue
  }

  get status(): Status {
    return this.#life.status
  }

  /**
   * The bound address of the frontend (clients), with the port resolved; still readable after
   * `close()`.
   * @throws `PIRATE_NOT_OPEN` before {@link open} has resolved.
   */
  get frontendEndpoint(): string {
    const endpoint = this.#frontendEndpoint
    if (endpoint === undefined) throw notBound("frontend")
    return endpoint
  }

  /**
   * The bound address of the backend (workers), with the port resolved; still readable after
   * `close()`.
   * @throws `PIRATE_NOT_OPEN` before {@link open} has resolved.
   */
  get backendEndpoint(): string {
    // The backend binds first: it counts once the frontend is bound too (an open that failed
    // on the frontend has closed the backend again).
    const endpoint = this.#frontendEndpoint === undefined ? undefined : this.#core?.endpoint
    if (endpoint === undefined) throw notBound("backend")
    return endpoint
  }

  open(): Promise<void> {
    return this.#life.open(async () => {
      const core = new Dispatcher("queue", this.#settings, this.#journal, (entry) =>
        this.#restore(entry),
      )
      forward(core, this)
      await core.open(this.#backendBind, "backend")
      this.#core = core
      const frontend = new Router({
        linger: 0,
        maxMessageSize: this.#settings.maxMessageSize,
        sendTimeout: this.#settings.sendTimeout,
      })
      try {
        if (this.#settings.curve)
          this.#unregisterCurve = await applyCurveServer(frontend, this.#settings.curve)
        await bindRetrying(frontend, this.#frontendBind, "frontend")
      } catch (err) {
        frontend.close()
        await core.close()
        throw err
      }
      this.#frontend = frontend
      this.#frontendEndpoint = frontend.lastEndpoint ?? this.#frontendBind
      this.#writer = new SocketWriter(frontend, (err) =>
        debug("queue: reply to a client failed: %s", errorMessage(err)),
      )
      this.#frontendLoop(frontend, core).catch((err: unknown) => this.emit("error", toError(err)))
    })
  }

  close(): Promise<void> {
    return this.#life.close(async () => {
      const errors: unknown[] = []
      try {
        this.#frontend?.close()
        this.#unregisterCurve?.()
      } catch (err) {
        errors.push(err)
      }
      try {
        await this.#core?.close()
      } catch (err) {
        errors.push(err)
      }
      if (errors.length > 0) throw new AggregateError(errors, "queue close failed")
    })
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  stats(): QueueStats {
    this.#life.assertOpen()
    const core = (this.#core as Dispatcher).stats()
    // Malformed client requests count as drops too, beside the backend's.
    return { ...core, ...this.#counts, dropped: core.dropped + this.#counts.malformed }
  }

  /** The stats in the Prometheus text exposition format, for scraping. */
  metrics(labels: Record<string, string> = {}): string {
    this.#life.assertOpen()
    const core = this.#core as Dispatcher
    const { counter: c } = metricsOf("pirate_queue")
    return renderPrometheus(
      [
        ...core.metrics("pirate_queue"),
        c("requests", "Requests received from clients.", this.#counts.requests),
        c("replies", "Replies sent to clients.", this.#counts.replies),
        c("joined", "Client retries joined to a request in flight.", this.#counts.joined),
        c("malformed", "Malformed client requests dropped.", this.#counts.malformed),
      ],
      labels,
    )
  }

  /** Connected workers and what each holds. */
  workers(): WorkerInfo[] {
    this.#life.assertOpen()
    return (this.#core as Dispatcher).workers()
  }

  /** Resolves when no request is waiting or in flight. */
  drained(): Promise<void> {
    this.#life.assertOpen()
    return (this.#core as Dispatcher).drained()
  }

  async #frontendLoop(frontend: Router, core: Dispatcher): Promise<void> {
    for (;;) {
      let msg: Buffer[]
      try {
        msg = await frontend.receive()
      } catch (err) {
        if (frontend.closed || errorCode(err) === "EAGAIN") return
        throw err
      }
      // REQ clients: [client, "", body] or, framed, [client, "", header, body] or
      // [client, "", header, body, meta] (meta: the request's queue and headers).
      const client = msg[0]
      if (!client || msg[1]?.length !== 0 || msg.length < 3 || msg.length > 5) {
        this.#counts.malformed++
        debug("queue: dropped a malformed request of %d frames", msg.length)
        continue
      }
      const framed = msg.length >= 4
      const requestId = framed ? decodeRequestHeader(msg[2]) : null
      if (framed && requestId === null) {
        this.#counts.malformed++
        debug("queue: dropped a request with a bad header")
        continue
      }
      const body = msg[framed ? 3 : 2] as Buffer
      let schedule: Schedule | undefined
      if (msg.length === 5) {
        try {
          const meta = decodeRequestMeta(msg[4] as Buffer)
          schedule = resolveSchedule({ queue: meta.queue, headers: meta.headers })
        } catch (err) {
          // A framed request can be told why: an error reply, instead of a timeout.
          this.#counts.malformed++
          debug("queue: refused a request with a bad meta frame: %s", errorMessage(err))
          this.#counts.replies++
          const e = toError(err)
          this.#writer?.write([
            client,
            FRAME_EMPTY,
            ERROR_STATUS,
            encodeRemoteError(e, e instanceof PirateError ? e.code : "PIRATE_PROTOCOL"),
          ])
          continue
        }
      }
      this.#counts.requests++
      if (requestId !== null && this.#join(requestId, client)) continue
      try {
        await core.reserve(body.length)
      } catch {
        return // closed
      }
      const target: Pending = { client: Buffer.from(client), framed, recovered: false }
      if (requestId !== null) this.#byRequestId.set(requestId, target)
      const { accepted } = core.submit(body, {
        durable: this.#journal.persistent,
        waiter: this.#waiter(requestId, target),
        // Its queue and headers go to the journal with it, and a restart keeps them.
        schedule,
        // The request id goes to the journal with the body: a restarted queue can then join the
        // client's retry to the recovered request instead of running it again.
        ...(this.#journal.persistent ? { stored: encodeRequestRecord(requestId, body) } : {}),
      })
      // A failed journal write also rejects the waiter (an error reply); nothing else to do here.
      accepted.catch(() => undefined)
    }
  }

  /**
   * A Lazy Pirate retry of a request still in flight (answered once, to the newest socket) or of a
   * recovered request already answered (answered again from the kept reply). False for a new one.
   */
  #join(requestId: string, client: Buffer): boolean {
    const pending = this.#byRequestId.get(requestId)
    if (pending) {
      pending.client = Buffer.from(client)
      this.#counts.joined++
      return true
    }
    const now = performance.now()
    for (const [id, kept] of this.#recoveredReplies) {
      if (kept.expires > now) break
      this.#recoveredReplies.delete(id)
    }
    const kept = this.#recoveredReplies.get(requestId)
    if (!kept) return false
    this.#counts.joined++
    this.#counts.replies++
    this.#writer?.write([client, FRAME_EMPTY, ...kept.frames])
    return true
  }

  /** Who waits for a request's reply: its client (the latest socket that asked), if any. */
  #waiter(requestId: string | null, target: Pending): Waiter {
    const settle = (frames: Buffer[] | undefined): void => {
      if (requestId !== null) {
        this.#byRequestId.delete(requestId)
        // The client of a recovered request may still be retrying (it may even have asked just
        // before this reply, from a socket it has given up on): keep the reply for its retry.
        if (target.recovered && frames)
          this.#recoveredReplies.set(requestId, {
            frames,
            expires: performance.now() + RECOVERED_REPLY_TTL,
          })
      }
      if (!frames || !target.client) return
      this.#counts.replies++
      this.#writer?.write([target.client, FRAME_EMPTY, ...frames])
    }
    return {
      resolve: (reply) => settle(target.framed ? [OK_STATUS, reply] : [reply]),
      // A plain client has no error channel: it times out and retries or gives up.
      reject: (err) => settle(target.framed ? [ERROR_STATUS, encodeRemoteError(err)] : undefined),
    }
  }

  /**
   * A request read back from the journal at a restart: the body goes to a worker, and a framed
   * one waits, under its request id, for its client's retry.
   */
  #restore(entry: JournalEntry): { payload: Buffer; waiter: Waiter | undefined } {
    const record = decodeRequestRecord(entry.payload)
    if (!record) return { payload: entry.payload, waiter: undefined }
    const { requestId, body } = record
    if (requestId === undefined || this.#byRequestId.has(requestId))
      return { payload: body, waiter: undefined } // a plain request: its client cannot be found
    const target: Pending = { client: undefined, framed: true, recovered: true }
    this.#byRequestId.set(requestId, target)
    return { payload: body, waiter: this.#waiter(requestId, target) }
  }
}
