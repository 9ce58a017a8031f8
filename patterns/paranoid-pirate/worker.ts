import { EventEmitter } from "node:events"
import { Dealer } from "zeromq"
import { Backoff } from "../../lib/backoff.js"
import { codecMismatch, codecName } from "../../lib/codec.js"
import { splitBody } from "../../lib/body.js"
import { debug } from "../../lib/debug.js"
import { PirateError, errorCode, errorMessage, toError } from "../../lib/errors.js"
import { Lifecycle, type Status } from "../../lib/lifecycle.js"
import { LatencyHistogram, renderPrometheus } from "../../lib/metrics.js"
import { Liveness } from "../../lib/liveness.js"
import {
  resolveWorker,
  workerMetrics,
  type WorkerSettings,
  type WorkerEvents,
  type WorkerOptions,
  type WorkerStats,
} from "./worker-options.js"
import { DedupeRuns } from "./worker-dedupe.js"
import { Jobs } from "./worker-jobs.js"
import { Session } from "./worker-session.js"
import { Voter } from "./worker-vote.js"
import {
  FRAME_GOODBYE,
  FRAME_HEARTBEAT,
  FRAME_VOTE,
  PPP,
  PPX,
  decodePair,
  decodeWelcome,
  type Welcome,
  encodeReady,
  decodeTaskMeta,
  recordBounds,
  type TaskMeta,
  singleEnvelope,
} from "../../lib/protocol.js"
import { SocketWriter } from "../../lib/writer.js"
import {
  applyCurveClient,
  handshakeRefusal,
  validateCurveClient,
  type CurveClientOptions,
} from "../../lib/security.js"

/**
 * A Paranoid Pirate worker: connects a DEALER to one or more senders (or queues), announces
 * READY with its credit, heartbeats both ways (also while busy), runs the handler with bounded
 * concurrency, acks with the handler's result or nacks with its error, and reconnects with
 * exponential backoff when a sender goes silent or away.
 *
 * `T` is the type of the payloads its handler receives and `R` the type of its replies (both
 * `unknown` by default): a promise the caller makes, not checked at runtime (see `JobHandler`).
 * They type the handler only: nothing else of a worker carries a payload.
 *
 * @example
 * ```ts
 * const worker = await Worker.open<{ file: string }>({
 *   connect: "tcp://127.0.0.1:5556",
 *   concurrency: 8,
 *   handler: async (job, ctx) => ({ resized: job.file, id: ctx.id }),
 * })
 * // …
 * await worker.close() // finishes running jobs first
 * ```
 */
export class Worker<T = unknown, R = unknown> extends EventEmitter<WorkerEvents> {
  readonly #endpoints: string[]
  readonly #o: WorkerSettings
  readonly #life = new Lifecycle("worker")
  #sessions: Session[] = []
  readonly #jobs: Jobs
  /** Resolves close()'s wait once closing can finish (see `#checkClose()`). */
  #onCloseable: (() => void) | undefined
  #closing = false
  #tick: NodeJS.Timeout | undefined
  /** The heartbeat interval the tick runs for. */
  #tickFor = Infinity
  readonly #stats = {
    received: 0,
    acked: 0,
    nacked: 0,
    discarded: 0,
    dropped: 0,
    reconnects: 0,
    deduplicated: 0,
    votes: 0,
  }
  readonly #dedupe: DedupeRuns | undefined
  readonly #curve: CurveClientOptions | undefined
  readonly #handlerLatency = new LatencyHistogram()
  /** Our codec's name, stated in READY; a sender whose WELCOME states another refuses us. */
  readonly #codec: string | undefined
  /** Votes for a sender of a pair (docs/pair.md section 5); none for a plain PPP worker. */
  readonly #voter: Voter<Session> | undefined

  /**
   * Validates options; does no I/O.
   * @throws TypeError or RangeError naming a wrong option.
   */
  constructor(options: WorkerOptions<T, R>) {
    super()
    const r = resolveWorker(options)
    this.#endpoints = r.endpoints
    this.#o = r.settings
    this.#codec = codecName(r.codec)
    this.#dedupe = options.dedupe === undefined ? undefined : new DedupeRuns(options.dedupe)
    this.#curve = options.curve === undefined ? undefined : validateCurveClient(options.curve)
    this.#jobs = new Jobs({
      handler: r.handler,
      codec: r.codec,
      settings: r.settings,
      stats: this.#stats,
      dedupe: this.#dedupe,
      latency: this.#handlerLatency,
      expired: (s) => this.#expired(s),
      idle: () => this.#checkClose(),
      emit: this.emit.bind(this),
    })
    this.#voter =
      r.settings.protocol === "ppx"
        ? new Voter<Session>({
            sessions: () => this.#sessions,
            vote: (s) => this.#vote(s),
            heartbeatInterval: r.settings.heartbeatInterval,
            liveness: r.settings.liveness,
          })
        : undefined
  }

  /** Creates and opens a worker. */
  static async open<T = unknown, R = unknown>(options: WorkerOptions<T, R>): Promise<Worker<T, R>> {
    const worker = new Worker<T, R>(options)
    await worker.open()
    return worker
  }

  get status(): Status {
    return this.#life.status
  }

  /** Connects to every sender. Never waits for a sender to exist: READY goes out when it does. */
  open(): Promise<void> {
    return this.#life.open(async () => {
      await this.#dedupe?.open()
      for (const endpoint of this.#endpoints) {
        const s = new Session(
          this,
          endpoint,
          new Liveness({
            heartbeatInterval: this.#o.heartbeatInterval,
            liveness: this.#o.liveness,
          }),
          new Backoff(this.#o.reconnect),
        )
        this.#sessions.push(s)
        this.#connect(s)
      }
      this.#armTick(this.#o.heartbeatInterval)
      this.#voter?.start()
    })
  }

  /**
   * Stops taking work: says GOODBYE, lets running and prefetched jobs finish (aborting them after
   * `closeTimeout`) together with any that were on their way when the sender read the GOODBYE
   * (its GOODBYE in answer says nothing more follows), sends their acks, then closes the sockets.
   */
  close(): Promise<void> {
    return this.#life.close(async () => {
      this.#closing = true
      this.#voter?.stop()
      for (const s of this.#sessions) {
        if (!s.ppx || !s.connected) continue
        s.writer?.write([FRAME_GOODBYE])
        s.goodbyeSent = true
      }
      if (!this.#closeable()) {
        let timer: NodeJS.Timeout | undefined
        const timedOut = new Promise<void>(
          (resolve) => (timer = setTimeout(resolve, this.#o.closeTimeout)),
        )
        const done = new Promise<void>((resolve) => (this.#onCloseable = resolve))
        await Promise.race([done, timedOut])
        clearTimeout(timer)
        this.#onCloseable = undefined
        if (this.#jobs.running > 0 || this.#jobs.queued > 0)
          for (const s of this.#sessions)
            s.abort.abort(new PirateError("PIRATE_CLOSED", "worker closed"))
      }
      clearInterval(this.#tick)
      for (const s of this.#sessions) {
        s.closed = true
        clearTimeout(s.reconnectTimer)
        s.flush()
        await s.writer?.flushed()
        s.socket?.close()
      }
      this.#jobs.clear()
      await this.#dedupe?.close()
    })
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** Closing can finish: no job runs or waits, and every GOODBYE we said was answered. */
  #closeable(): boolean {
    if (this.#jobs.running > 0 || this.#jobs.queued > 0) return false
    return this.#sessions.every((s) => !s.goodbyeSent || s.goodbyeConfirmed || !s.connected)
  }

  /** Run whenever a job ends or a session's goodbye is settled. */
  #checkClose(): void {
    if (this.#onCloseable && this.#closeable()) this.#onCloseable()
  }

  stats(): WorkerStats {
    return {
      ...this.#stats,
      running: this.#jobs.running,
      queued: this.#jobs.queued,
      handlerLatency: this.#handlerLatency.summary(),
      sessions: this.#sessions.map((s) => ({
        endpoint: s.endpoint,
        connected: s.connected,
        protocol: s.heard ? (s.ppx ? "ppx" : "ppp") : "none",
        ...(s.refused === undefined ? {} : { refused: s.refused }),
      })),
    }
  }

  /** The stats in the Prometheus text exposition format, for scraping. */
  metrics(labels: Record<string, string> = {}): string {
    return renderPrometheus(workerMetrics(this.stats()), labels)
  }

  // ------------------------------------------------------------------------------------------
  // sessions

  /** Checks liveness and heartbeats four times per interval (the shortest one in use). */
  #armTick(heartbeatInterval: number): void {
    if (this.#tick !== undefined && heartbeatInterval >= this.#tickFor) return
    clearInterval(this.#tick)
    this.#tickFor = heartbeatInterval
    this.#tick = setInterval(() => this.#onTick(), Math.max(10, Math.floor(heartbeatInterval / 4)))
    this.#tick.unref()
  }

  #connect(s: Session): void {
    s.generation++
    // Our own heartbeat settings until a WELCOME says otherwise.
    if (
      s.liveness.heartbeatInterval !== this.#o.heartbeatInterval ||
      s.liveness.liveness !== this.#o.liveness
    )
      s.liveness = new Liveness({
        heartbeatInterval: this.#o.heartbeatInterval,
        liveness: this.#o.liveness,
      })
    s.reset()
    const socket = new Dealer({
      linger: 0,
      maxMessageSize: this.#o.maxMessageSize,
      reconnectInterval: 100,
      sendHighWaterMark: 100_000,
    })
    if (this.#curve) applyCurveClient(socket, this.#curve)
    s.socket = socket
    s.writer = new SocketWriter(socket, (err) =>
      debug("worker: send to %s failed: %s", s.endpoint, errorMessage(err)),
    )
    const generation = s.generation
    // Watch before connecting, or the "connect" event may come before the monitor exists.
    this.#watch(s, socket, generation).catch(() => undefined)
    socket.connect(s.endpoint)
    // READY is queued at once; it goes out when the sender is there, first on the connection.
    const hello =
      this.#o.protocol === "ppx"
        ? {
            credit: this.#o.prefetch,
            heartbeatInterval: this.#o.heartbeatInterval,
            liveness: this.#o.liveness,
            maxMessageSize: this.#o.maxMessageSize,
            started: true as const,
            single: true as const,
            codec: this.#codec,
            queues: this.#o.queues,
            // We take PAIR and vote; a sender not in a pair ignores the key.
            pair: true as const,
          }
        : undefined
    s.writer.write([encodeReady(hello)])
    s.liveness.seen()
    s.liveness.sent()
    this.#receiveLoop(s, socket, generation).catch((err: unknown) =>
      this.emit("error", toError(err)),
    )
  }

  /** Follows the socket's connection state: liveness counts only while connected. */
  async #watch(s: Session, socket: Dealer, generation: number): Promise<void> {
    const events = socket.events
    // Set when the security handshake failed: the disconnect that follows says why.
    let refused: string | undefined
    try {
      while (!events.closed) {
        const event = await events.receive()
        if (s.generation !== generation) return
        if (event.type === "connect") {
          s.connected = true
          s.liveness.seen()
        } else if (event.type === "disconnect") {
          s.connected = false
          this.#lost(s, refused ?? "disconnected")
          return
        } else {
          refused = handshakeRefusal(event, this.#curve !== undefined) ?? refused
          if (refused) debug("worker: %s: %s", s.endpoint, refused)
        }
      }
    } catch {
      /* the socket was closed */
    }
  }

  #lost(s: Session, reason: string, wait = s.backoff.next()): void {
    if (s.closed) return
    this.#stats.reconnects++
    debug("worker: lost %s (%s), reconnecting in %d ms", s.endpoint, reason, wait)
    s.generation++ // results of this session's jobs are now stale
    s.abort.abort(new PirateError("PIRATE_CLOSED", `sender ${s.endpoint} lost: ${reason}`))
    s.socket?.close()
    s.writer?.clear()
    s.socket = undefined
    s.writer = undefined
    s.connected = false
    this.#voter?.update(s.silentSince)
    s.silentSince = undefined
    // Jobs of that session that have not started are dropped: the sender gives them to others.
    this.#jobs.dropQueued(s)
    this.emit("sender:lost", { endpoint: s.endpoint, reason, reconnectIn: wait })
    if (this.#closing) return this.#checkClose()
    s.reconnectTimer = setTimeout(() => {
      s.reconnectTimer = undefined
      if (!s.closed && !this.#closing) this.#connect(s)
    }, wait)
  }

  #onTick(): void {
    for (const s of this.#sessions) {
      if (!s.writer || this.#expired(s)) continue
      if (!s.connected) s.liveness.seen() // not connected yet: the sender may not exist yet
      // In plain PPP a worker is silent while busy: a heartbeat tells the queue it is idle again.
      if (!s.ppx && s.plainJobs > 0) continue
      if (s.liveness.heartbeatDue()) {
        s.writer.write([FRAME_HEARTBEAT])
        s.liveness.sent()
      }
    }
  }

  async #receiveLoop(s: Session, socket: Dealer, generation: number): Promise<void> {
    for (;;) {
      let msg: Buffer[]
      try {
        msg = await socket.receive()
      } catch (err) {
        if (socket.closed || errorCode(err) === "EAGAIN") return
        throw err
      }
      if (s.generation !== generation || this.#expired(s)) return
      s.connected = true
      s.heardAt = performance.now()
      s.liveness.seen()
      s.backoff.reset()
      this.#onMessage(s, msg)
    }
  }

  /**
   * True, with the session lost, when the sender has been silent for longer than the expiry while
   * connected (this process was frozen, or the network was cut): the sender has given up on the
   * session, whatever is still queued on the socket, and would take no answer sent on it.
   */
  #expired(s: Session): boolean {
    if (!s.connected || !s.liveness.expired()) return false
    const silence = s.liveness.silence()
    s.silentSince = performance.now() - silence
    this.#lost(s, `no heartbeat for ${Math.round(silence)} ms`)
    return true
  }

  #onMessage(s: Session, msg: Buffer[]): void {
    const first = msg[0]
    if (first === undefined) return
    if (msg.length === 3 && msg[1]?.length === 0) {
      this.#heard(s)
      return this.#jobs.accept(s, first, -1, msg[2] as Buffer, -1, false)
    }
    if (first.length === 1) {
      const cmd = first[0]
      if (msg.length === 1 && cmd === PPP.HEARTBEAT) return this.#heard(s)
      if (cmd === PPX.WELCOME && msg.length === 2 && this.#o.protocol === "ppx") {
        let welcome: Welcome
        try {
          welcome = decodeWelcome(msg[1])
        } catch (err) {
          return this.#drop(s, errorMessage(err))
        }
        // A sender answers with the lower of its version and ours (2): 1 or 2; anything else,
        // stay plain PPP.
        if (welcome.version > PPX.VERSION)
          return this.#drop(s, `WELCOME for unknown PPX version ${welcome.version}`)
        const mismatch = codecMismatch(
          this.#codec,
          welcome.codec,
          `sender ${s.endpoint}`,
          "this worker",
          `the worker takes no task from it and tries again every ${this.#o.reconnect.max} ms`,
        )
        if (mismatch) return this.#refused(s, mismatch)
        if (s.welcomed(welcome) && !this.#closing) this.#armTick(welcome.heartbeatInterval)
        this.#heard(s)
        return this.#voter?.update()
      }
      if (cmd === PPX.PAIR && msg.length === 2 && s.ppx) {
        // [0x1a, msgpack{state}]: the sender of a pair changed state
        try {
          s.pair = decodePair(msg[1])
        } catch (err) {
          return this.#drop(s, errorMessage(err))
        }
        return this.#voter?.update()
      }
      if (cmd === PPX.TASKS && s.ppx && (msg.length === 3 || msg.length === 4)) {
        // [0x11, envelopes, bodies] or (PPX/2) [0x11, envelopes, bodies, metas]: each job keeps
        // its records' offsets, not a view of each
        const envelopes = msg[1] as Buffer
        const bodies = msg[2] as Buffer
        const env = recordBounds(envelopes, Infinity, 1)
        const rep = env && recordBounds(bodies, env.length / 2, 4)
        if (!env || !rep) return this.#drop(s, "TASKS whose envelopes do not match its bodies")
        const metas = msg.length === 4 ? this.#metas(msg[3] as Buffer, env.length / 2) : undefined
        if (metas === null) return this.#drop(s, "TASKS with a malformed metas frame")
        s.hold()
        try {
          // A record's length (1 byte for an envelope, 4 for a body) comes just before its bytes.
          for (let i = 0; i < env.length; i += 2)
            this.#jobs.accept(
              s,
              envelopes,
              (env[i] as number) - 1,
              bodies,
              (rep[i] as number) - 4,
              true,
              metas?.[i / 2],
            )
        } finally {
          s.release()
        }
        return
      }
      if (cmd === PPX.TASKM && s.ppx && (msg.length === 4 || msg.length === 5)) {
        // [0x19, envelope, meta, body] or [0x19, envelope, meta, prefix, rest]: a TASK with its
        // meta record (PPX/2)
        const split = msg.length === 5
        const envelope = singleEnvelope([msg[1] as Buffer, ...msg.slice(3)], split ? 2 : 1)
        const metaFrame = msg[2] as Buffer
        const meta = envelope && decodeTaskMeta(metaFrame, 0, metaFrame.length)
        if (!envelope || !meta)
          return this.#drop(s, "TASKM that is not [0x19, envelope, meta, body]")
        const body = split ? splitBody(msg[3] as Buffer, msg[4] as Buffer) : (msg[3] as Buffer)
        return this.#jobs.accept(s, envelope, -1, body, -1, true, meta)
      }
      if (cmd === PPX.TASK && s.ppx) {
        // [0x17, envelope, body] or [0x17, envelope, prefix, rest]: one task; the body is the
        // frame as received (no copy), or the two frames of a split body (lib/body.ts)
        const split = msg.length === 4
        const envelope = singleEnvelope(msg.slice(1), split ? 2 : 1)
        if (!envelope) return this.#drop(s, "TASK that is not [0x17, envelope, body]")
        const body = split ? splitBody(msg[2] as Buffer, msg[3] as Buffer) : (msg[2] as Buffer)
        return this.#jobs.accept(s, envelope, -1, body, -1, true)
      }
      if (cmd === PPX.GOODBYE && msg.length === 1) {
        if (s.goodbyeSent) {
          // The answer to ours: the sender sends nothing after it. Finish what we hold.
          s.goodbyeConfirmed = true
          return this.#checkClose()
        }
        // The sender is shutting down: reconnect from scratch (quickly; a restart is likely).
        s.backoff.reset()
        return this.#lost(s, "sender said goodbye")
      }
    }
    this.#drop(s, `malformed message of ${msg.length} frames`)
  }

  /** The meta records of a TASKS frame, one per task; null when malformed. */
  #metas(frame: Buffer, count: number): TaskMeta[] | null {
    const bounds = recordBounds(frame, count, 4)
    if (!bounds) return null
    const out: TaskMeta[] = []
    for (let i = 0; i < bounds.length; i += 2) {
      const meta = decodeTaskMeta(frame, bounds[i] as number, bounds[i + 1] as number)
      if (!meta) return null
      out.push(meta)
    }
    return out
  }

  #heard(s: Session): void {
    if (s.heard) return
    s.heard = true
    s.refused = undefined
    this.#voter?.update()
    this.emit("sender:ready", { endpoint: s.endpoint, protocol: s.ppx ? "ppx" : "ppp" })
  }

  /** VOTE to the sender of this session: we have had no active sender for a liveness window. */
  #vote(s: Session): void {
    s.writer?.write([FRAME_VOTE])
    s.liveness.sent()
    this.#stats.votes++
    debug("worker: vote for %s (%s)", s.endpoint, s.pair ?? "?")
    this.emit("pair:vote", { endpoint: s.endpoint })
  }

  /**
   * The sender refused us (its codec differs): report it once (`error` when listened to, as it
   * ends no process; always in `stats().sessions`), stop the session, and try again only after
   * the longest reconnect delay, since a mismatch does not go away by itself, but a sender
   * restarted with the right codec is found again without restarting the worker.
   */
  #refused(s: Session, err: PirateError): void {
    if (s.refused !== err.message) {
      s.refused = err.message
      if (this.listenerCount("error") > 0) this.emit("error", err)
    }
    debug("worker: %s", err.message)
    const { max, jitter } = this.#o.reconnect
    this.#lost(s, err.message, Math.round(max * (1 - jitter * Math.random())))
  }

  #drop(s: Session, reason: string): void {
    this.#stats.dropped++
    debug("worker: dropped from %s: %s", s.endpoint, reason)
  }
}
