/**
 * The queue core shared by `Sender` and `ParanoidPirateQueue`: a ROUTER that workers connect to,
 * the in-memory window of messages over a `Journal`, credit-based dispatch, acks, heartbeats,
 * redelivery of a lost worker's messages, retries with backoff and dead letters.
 */
import { EventEmitter } from "node:events"
import { Router, capability } from "zeromq"
import { backoffDelay, type BackoffOptions } from "../../lib/backoff.js"
import { debug } from "../../lib/debug.js"
import {
  DeadLetterError,
  PirateError,
  abortedError,
  closedError,
  errorMessage,
  toError,
} from "../../lib/errors.js"
import { IdGenerator } from "../../lib/journal/ids.js"
import type {
  DeadLetter,
  Durability,
  Journal,
  JournalEntry,
  JournalUpdate,
} from "../../lib/journal/types.js"
import { Liveness } from "../../lib/liveness.js"
import { LatencyHistogram, type LatencySummary, type Metric } from "../../lib/metrics.js"
import {
  FRAME_EMPTY,
  FRAME_GOODBYE,
  FRAME_HEARTBEAT,
  FRAME_TASKS,
  packBodies,
  packLimit,
  PPP,
  PPX,
  decodeEnvelope,
  decodeNack,
  decodeReady,
  encodeEnvelope,
  encodeWelcome,
  packTaskEnvelopes,
  unpackBodies,
  unpackEnvelopes,
  type NackInfo,
} from "../../lib/protocol.js"
import { SocketWriter, bindRetrying } from "../../lib/writer.js"
import { Fifo } from "../../lib/fifo.js"
import { applyCurveServer, type CurveServerOptions } from "../../lib/security.js"

/** libzmq draft option ZMQ_ROUTER_NOTIFY and its "disconnect" flag. */
const ZMQ_ROUTER_NOTIFY = 97
const ZMQ_NOTIFY_DISCONNECT = 2

/** Settings of the core; `Sender` and `ParanoidPirateQueue` validate and fill them. */
export interface DispatcherSettings {
  heartbeatInterval: number
  liveness: number
  maxAttempts: number
  retryBackoff: Required<BackoffOptions>
  ackTimeout: number
  window: number
  maxBatch: number
  durability: Durability
  maxMessageSize: number
  sendTimeout: number
  random: () => number
  curve: CurveServerOptions | undefined
}

/** Events of the core (re-emitted by `Sender` and `ParanoidPirateQueue`). */
export interface DispatcherEvents {
  "worker:ready": [{ workerId: string; credit: number; protocol: "ppp" | "ppx" }]
  "worker:lost": [{ workerId: string; reason: string; requeued: number }]
  "message:requeued": [{ id: string; attempt: number; reason: string }]
  "message:nacked": [{ id: string; attempt: number; error: string; delay: number }]
  "message:dead": [{ id: string; attempts: number; error: string }]
  drained: [Record<string, never>]
  error: [Error]
}

/** A snapshot of the core's counters. */
export interface DispatcherStats {
  /** Messages waiting for a worker. */
  ready: number
  /** Messages handed to a worker and not yet acked. */
  inFlight: number
  /** Messages waiting for their retry delay. */
  delayed: number
  /** Pending messages still on disk, not yet loaded into the window. */
  backlog: number
  /** Dead letters in the journal. */
  dead: number
  /** Messages accepted since open. */
  sent: number
  /** Messages acknowledged since open. */
  acked: number
  /** Handler failures reported by workers since open. */
  nacked: number
  /** Messages handed out again after a lost worker, an ack timeout or a nack, since open. */
  redelivered: number
  /** Acks ignored because they named an attempt no longer in flight. */
  staleAcks: number
  /** Malformed or unexpected frames dropped. */
  dropped: number
  /** Connected workers. */
  workers: number
  /** Workers lost (heartbeat expired, disconnected, unreachable) since open. */
  workersLost: number
  /** Connections refused by the CURVE allow list, since open. */
  denied: number
  /** Time from acceptance to ack of acked messages (ms), since open. */
  latency: LatencySummary
}

type State = "appending" | "ready" | "inflight" | "delayed" | "done"

interface Waiter {
  resolve: (reply: Buffer) => void
  reject: (err: Error) => void
}

interface Message {
  id: string
  payload: Buffer
  /** Attempts started so far (the one in flight included). */
  attempt: number
  enqueuedAt: number
  /** performance.now() when accepted, for the latency histogram. */
  t0: number
  state: State
  durable: boolean
  lastError: string | undefined
  notBefore: number | undefined
  worker: WorkerPeer | undefined
  /** performance.now() of the last dispatch. */
  sentAt: number
  deadline: number | undefined
  waiter: Waiter | undefined
}

/** A message with every field set, so that all messages share one shape (fast property access). */
function message(
  fields: Pick<Message, "id" | "payload" | "attempt" | "enqueuedAt" | "t0" | "state" | "durable">,
): Message {
  return {
    id: fields.id,
    payload: fields.payload,
    attempt: fields.attempt,
    enqueuedAt: fields.enqueuedAt,
    t0: fields.t0,
    state: fields.state,
    durable: fields.durable,
    lastError: undefined,
    notBefore: undefined,
    worker: undefined,
    sentAt: 0,
    deadline: undefined,
    waiter: undefined,
  }
}

interface WindowWaiter {
  /** A producer that waits for a place (`reserve()`): resolves without a value. A queued `send()`
   * (`frame` set): resolves with the message id once accepted. */
  resolve: (id: string) => void
  reject: (err: Error) => void
  /** A `send()`'s message, submitted when it gets its place. */
  frame: Buffer | undefined
  /** Resolved or aborted: skip it. */
  settled: boolean
  signal: AbortSignal | undefined
}

interface WorkerPeer {
  key: string
  routingId: Buffer
  protocol: "ppp" | "ppx"
  credit: number
  /** Largest packed bodies frame to send it (see `packLimit()`). */
  packLimit: number
  inflight: Map<string, Message>
  liveness: Liveness
  goodbye: boolean
}

export class Dispatcher extends EventEmitter<DispatcherEvents> {
  readonly #s: DispatcherSettings
  readonly #journal: Journal
  readonly #name: string
  #router: Router | undefined
  #writer: SocketWriter | undefined
  #ids = new IdGenerator()
  #endpoint: string | undefined
  #closed = false
  #unregisterCurve: (() => void) | undefined

  readonly #messages = new Map<string, Message>()
  /**
   * Ready messages: `#front` (requeued, served first; a stack whose top is the next one) then
   * `#ready` in send order. Entries whose state changed since are skipped when taken.
   */
  readonly #front: Message[] = []
  readonly #ready = new Fifo<Message>()
  #delayed = new Set<Message>()
  #delayTimer: NodeJS.Timeout | undefined
  #delayAt = Infinity

  readonly #workers = new Map<string, WorkerPeer>()
  /**
   * PPX workers no longer registered whose connection may still be up: "expired" (lost while
   * silent or unreachable) or "departed" (forgotten after their GOODBYE). A HEARTBEAT from one of
   * them must not register it as a plain PPP worker. Bounded: only recent ones matter.
   */
  readonly #gone = new Map<string, "expired" | "departed">()
  #rr: WorkerPeer[] = []
  #rrIndex = 0

  #dispatchScheduled = false
  #tick: NodeJS.Timeout | undefined
  /** The heartbeat interval the tick is armed for. */
  #tickFor = Infinity

  /** Group commit lanes. */
  #appendQueue: Message[] = []
  #appendSync = false
  #appending: Promise<void> | undefined
  #appendWaiters: { resolve: () => void; reject: (err: Error) => void; sync: boolean }[] = []
  #removeQueue: string[] = []
  #updateQueue: JournalUpdate[] = []
  #buryQueue: DeadLetter[] = []
  #changing: Promise<void> | undefined

  /** Window accounting and producers waiting for room. */
  readonly #windowWaiters = new Fifo<WindowWaiter>()
  /** Producers waiting and not aborted. */
  #waiting = 0
  /** Waiting producers by the signal they gave, and that signal's one listener. */
  readonly #bySignal = new Map<AbortSignal, Set<WindowWaiter>>()
  readonly #signalListeners = new Map<AbortSignal, () => void>()
  #reserved = 0
  #backlogUntil: string | undefined
  #backlogAfter: string | undefined
  #backlogCount = 0
  #refilling: Promise<void> | undefined
  #drainedWaiters: (() => void)[] = []

  readonly #latency = new LatencyHistogram()
  readonly #stats = {
    sent: 0,
    acked: 0,
    nacked: 0,
    redelivered: 0,
    staleAcks: 0,
    dropped: 0,
    dead: 0,
    workersLost: 0,
    denied: 0,
  }

  constructor(name: string, settings: DispatcherSettings, journal: Journal) {
    super()
    this.#name = name
    this.#s = settings
    this.#journal = journal
  }

  get endpoint(): string | undefined {
    return this.#endpoint
  }

  // ------------------------------------------------------------------------------------------
  // lifecycle

  async open(bind: string): Promise<void> {
    await this.#journal.open()
    try {
      this.#ids = new IdGenerator(await this.#journal.lastId())
      const js = await this.#journal.stats()
      this.#stats.dead = js.dead
      if (js.pending > 0) {
        this.#backlogUntil = await this.#journal.lastId()
        this.#backlogCount = js.pending
      }
      const router = new Router({
        linger: 0,
        mandatory: true,
        sendTimeout: this.#s.sendTimeout,
        maxMessageSize: this.#s.maxMessageSize,
        sendHighWaterMark: 100_000,
        receiveHighWaterMark: 100_000,
      })
      if (capability.draft) {
        // Tells us at once when a worker's connection drops (crash, kill), so its messages are
        // redelivered without waiting for the heartbeat timeout. Heartbeats remain the authority
        // for hung workers.
        setRouterNotify(router)
      }
      if (this.#s.curve) {
        this.#unregisterCurve = await applyCurveServer(
          router,
          this.#s.curve,
          () => this.#stats.denied++,
        )
      }
      await bindRetrying(router, bind)
      this.#router = router
      this.#endpoint = router.lastEndpoint ?? bind
      this.#writer = new SocketWriter(router, (err, frames) => this.#onSendError(err, frames))
      this.#receiveLoop(router).catch((err: unknown) => this.emit("error", toError(err)))
      this.#armTick(this.#s.heartbeatInterval)
      await this.#refill()
    } catch (err) {
      this.#router?.close()
      await this.#journal.close()
      throw err
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const errors: unknown[] = []
    clearInterval(this.#tick)
    clearTimeout(this.#delayTimer)
    const closed = closedError(this.#name)
    for (const w of this.#windowWaiters.drain()) if (!w.settled) w.reject(closed)
    for (const [signal, onAbort] of this.#signalListeners)
      signal.removeEventListener("abort", onAbort)
    this.#signalListeners.clear()
    this.#bySignal.clear()
    for (const w of this.#workers.values())
      if (w.protocol === "ppx") this.#writer?.write([w.routingId, FRAME_GOODBYE])
    for (const step of [
      async () => {
        await this.#writer?.flushed()
        // No unbind() before close(): libzmq 4.3.5 can abort (pipe.cpp assertion) when an unbound
        // socket's pipes are still terminating as it closes. A restart on the same endpoint
        // retries its bind while the port is released (bindRetrying).
        this.#router?.close()
        this.#unregisterCurve?.()
      },
      () => this.#appending,
      () => this.#refilling,
      () => this.#flushChanges(),
      () => this.#journal.close(),
    ]) {
      try {
        await step()
      } catch (err) {
        errors.push(err)
      }
    }
    for (const m of this.#messages.values()) {
      if (m.waiter) m.waiter.reject(closed)
      m.waiter = undefined
    }
    for (const w of this.#appendWaiters.splice(0)) w.reject(closed)
    for (const d of this.#drainedWaiters.splice(0)) d()
    if (errors.length > 0) throw new AggregateError(errors, `${this.#name} close failed`)
  }

  // ------------------------------------------------------------------------------------------
  // producing

  /**
   * Reserves a place in the window for one message (backpressure): at once when there is room,
   * else waits. The caller must `submit()` right after, which uses the reservation.
   */
  reserve(signal?: AbortSignal): Promise<void> | undefined {
    if (this.#closed) throw closedError(this.#name)
    if (this.#hasRoom() && this.#waiting === 0) {
      this.#reserved++
      return undefined
    }
    signal?.throwIfAborted()
    return new Promise<void>((resolve, reject) =>
      this.#wait(() => resolve(), reject, undefined, signal),
    )
  }

  /**
   * `reserve()` and `submit()` in one, for a durable send: resolves with the message id once it is
   * accepted. A producer that waits for room costs one promise and one queue entry, which matters
   * when many thousands of sends are fired at once.
   */
  send(frame: Buffer, signal?: AbortSignal): Promise<string> {
    if (this.#closed) return Promise.reject(closedError(this.#name))
    if (this.#hasRoom() && this.#waiting === 0) {
      this.#reserved++
      return this.#accept(frame)
    }
    if (signal?.aborted) return Promise.reject(abortedError(signal))
    return new Promise<string>((resolve, reject) => this.#wait(resolve, reject, frame, signal))
  }

  #wait(
    resolve: (id: string) => void,
    reject: (err: Error) => void,
    frame: Buffer | undefined,
    signal: AbortSignal | undefined,
  ): void {
    const entry: WindowWaiter = { resolve, reject, frame, settled: false, signal }
    this.#windowWaiters.push(entry)
    this.#waiting++
    if (signal) this.#watchSignal(signal, entry)
  }

  /** Submits a send whose place is reserved; resolves with its id once accepted. */
  #accept(frame: Buffer): Promise<string> {
    const { id, accepted } = this.submit(frame, { durable: true })
    return accepted === ACCEPTED ? Promise.resolve(id) : accepted.then(() => id)
  }

  /**
   * One abort listener per signal, however many producers wait with it (adding listeners to one
   * signal one by one is quadratic), removed when its last waiter is settled.
   */
  #watchSignal(signal: AbortSignal, entry: WindowWaiter): void {
    let waiters = this.#bySignal.get(signal)
    if (!waiters) {
      const set = new Set<WindowWaiter>()
      waiters = set
      this.#bySignal.set(signal, set)
      const onAbort = (): void => {
        this.#bySignal.delete(signal)
        const err = abortedError(signal)
        for (const w of set) {
          if (w.settled) continue
          w.settled = true // skipped by #admit()
          this.#waiting--
          w.reject(err)
        }
      }
      this.#signalListeners.set(signal, onAbort)
      signal.addEventListener("abort", onAbort, { once: true })
    }
    waiters.add(entry)
  }

  /** A waiter got its place: forget it, and its signal's listener when it was the last one. */
  #unwatchSignal(entry: WindowWaiter): void {
    const signal = entry.signal
    if (!signal) return
    const set = this.#bySignal.get(signal)
    if (!set) return
    set.delete(entry)
    if (set.size > 0) return
    this.#bySignal.delete(signal)
    const onAbort = this.#signalListeners.get(signal)
    this.#signalListeners.delete(signal)
    if (onAbort) signal.removeEventListener("abort", onAbort)
  }

  #hasRoom(): boolean {
    return this.#messages.size + this.#reserved < this.#s.window && this.#backlogCount === 0
  }

  /** Hands free places in the window to waiting producers, oldest first. */
  #admit(): void {
    while (this.#waiting > 0 && this.#hasRoom()) {
      const w = this.#windowWaiters.shift()
      if (!w) break
      if (w.settled) continue
      w.settled = true
      this.#waiting--
      this.#reserved++
      this.#unwatchSignal(w)
      if (w.frame === undefined) {
        w.resolve("")
        continue
      }
      const { id, accepted } = this.submit(w.frame, { durable: true })
      if (accepted === ACCEPTED) w.resolve(id)
      else accepted.then(() => w.resolve(id), w.reject)
    }
  }

  /**
   * Accepts a message (the caller reserved its place with `reserve()`), journals it (group commit) and makes it
   * ready. Resolves with its id once as durable as configured (`durable: false`: memory only).
   */
  submit(
    payload: Buffer,
    options: { durable: boolean; waiter?: Waiter },
  ): { id: string; accepted: Promise<void> } {
    if (this.#closed) throw closedError(this.#name)
    if (this.#reserved > 0) this.#reserved--
    const id = this.#ids.next()
    // Only a persistent journal keeps pending messages; a memory journal only keeps dead letters.
    const durable = options.durable && this.#journal.persistent
    const m = message({
      id,
      payload,
      attempt: 0,
      enqueuedAt: Date.now(),
      t0: performance.now(),
      state: "appending",
      durable,
    })
    m.waiter = options.waiter
    this.#messages.set(id, m)
    this.#stats.sent++
    if (!durable) {
      this.#makeReady(m)
      return { id, accepted: ACCEPTED }
    }
    this.#appendQueue.push(m)
    const sync = this.#s.durability === "fsync"
    if (sync) this.#appendSync = true
    const accepted =
      this.#s.durability === "memory"
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) =>
            this.#appendWaiters.push({ resolve, reject, sync }),
          )
    this.#appending ??= this.#appendLoop()
    return { id, accepted }
  }

  /** Cancels a message nobody waits for any more (an aborted request). */
  cancel(id: string): void {
    const m = this.#messages.get(id)
    if (!m) return
    m.waiter = undefined
    if (m.state === "ready" || m.state === "delayed") {
      this.#delayed.delete(m)
      this.#finish(m)
      if (m.durable) this.#remove_(m.id)
    }
  }

  async #appendLoop(): Promise<void> {
    try {
      while (this.#appendQueue.length > 0) {
        const batch = this.#appendQueue
        const waiters = this.#appendWaiters
        const sync = this.#appendSync
        this.#appendQueue = []
        this.#appendWaiters = []
        this.#appendSync = false
        const entries: JournalEntry[] = batch.map((m) => ({
          id: m.id,
          payload: m.payload,
          attempts: 0,
          enqueuedAt: m.enqueuedAt,
        }))
        try {
          await this.#journal.append(entries, { sync })
        } catch (err) {
          const e = journalWriteError(err)
          for (const w of waiters) w.reject(e)
          for (const m of batch) {
            if (m.state !== "appending") continue
            const waiter = m.waiter
            this.#finish(m)
            waiter?.reject(e)
          }
          this.emit("error", e)
          continue
        }
        for (const m of batch) if (m.state === "appending") this.#makeReady(m)
        for (const w of waiters) w.resolve()
      }
    } finally {
      this.#appending = undefined
    }
  }

  // ------------------------------------------------------------------------------------------
  // window, backlog and the ready queue

  #makeReady(m: Message): void {
    m.state = "ready"
    this.#ready.push(m)
    this.#scheduleDispatch()
  }

  #makeReadyFront(list: Message[]): void {
    if (list.length === 0) return
    list.sort(byId)
    // Onto the stack in reverse, so that the oldest of them is served first.
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i] as Message
      m.state = "ready"
      this.#front.push(m)
    }
    this.#scheduleDispatch()
  }

  #takeReady(): Message | undefined {
    for (let m = this.#front.pop(); m; m = this.#front.pop()) if (m.state === "ready") return m
    for (let m = this.#ready.shift(); m; m = this.#ready.shift()) if (m.state === "ready") return m
    return undefined
  }

  #readyCount(): number {
    let n = 0
    for (const m of this.#messages.values()) if (m.state === "ready") n++
    return n
  }

  /** A message left the window (acked, dead, cancelled): wake producers or page in backlog. */
  #finish(m: Message): void {
    m.state = "done"
    this.#messages.delete(m.id)
    if (this.#backlogCount > 0) {
      if (this.#messages.size <= this.#s.window / 2) this.#refilling ??= this.#refill()
    } else this.#admit()
    this.#checkDrained()
  }

  /** Loads pending messages from the journal into the window (restart recovery, big backlogs). */
  async #refill(): Promise<void> {
    try {
      while (this.#backlogCount > 0 && !this.#closed) {
        const room = this.#s.window - this.#messages.size - this.#reserved
        if (room <= 0) return
        const page = await this.#journal.pending({
          ...(this.#backlogAfter !== undefined ? { after: this.#backlogAfter } : {}),
          ...(this.#backlogUntil !== undefined ? { until: this.#backlogUntil } : {}),
          limit: room,
        })
        if (page.length === 0) {
          this.#backlogCount = 0
          break
        }
        const now = Date.now()
        for (const e of page) {
          this.#backlogAfter = e.id
          if (this.#messages.has(e.id)) continue
          const m = message({
            id: e.id,
            payload: e.payload,
            attempt: e.attempts,
            enqueuedAt: e.enqueuedAt,
            t0: sinceEpoch(e.enqueuedAt),
            state: "ready",
            durable: this.#journal.persistent,
          })
          m.lastError = e.lastError
          this.#messages.set(m.id, m)
          if (e.notBefore !== undefined && e.notBefore > now) this.#delay(m, e.notBefore)
          else this.#makeReady(m)
        }
        this.#backlogCount = Math.max(0, this.#backlogCount - page.length)
        if (page.length < room) this.#backlogCount = 0
      }
    } finally {
      this.#refilling = undefined
    }
    this.#admit() // the backlog may be gone: let producers in
  }

  /** Adds dead letters that were replayed in the journal back to the window. */
  requeueReplayed(entries: readonly DeadLetter[]): void {
    const list: Message[] = []
    for (const e of entries) {
      if (this.#messages.has(e.id)) continue
      const m = message({
        id: e.id,
        payload: e.payload,
        attempt: 0,
        enqueuedAt: e.enqueuedAt,
        t0: sinceEpoch(e.enqueuedAt),
        state: "ready",
        durable: this.#journal.persistent,
      })
      this.#messages.set(m.id, m)
      list.push(m)
    }
    this.#stats.dead = Math.max(0, this.#stats.dead - list.length)
    this.#makeReadyFront(list)
  }

  #delay(m: Message, at: number): void {
    m.state = "delayed"
    m.notBefore = at
    this.#delayed.add(m)
    if (at < this.#delayAt) {
      clearTimeout(this.#delayTimer)
      this.#delayAt = at
      this.#delayTimer = setTimeout(() => this.#releaseDelayed(), Math.max(0, at - Date.now()))
    }
  }

  #releaseDelayed(): void {
    this.#delayAt = Infinity
    this.#delayTimer = undefined
    const now = Date.now()
    const due: Message[] = []
    let next = Infinity
    for (const m of this.#delayed) {
      const at = m.notBefore ?? 0
      if (at <= now) {
        this.#delayed.delete(m)
        m.notBefore = undefined
        due.push(m)
      } else if (at < next) next = at
    }
    this.#makeReadyFront(due)
    if (next < Infinity) {
      this.#delayAt = next
      this.#delayTimer = setTimeout(() => this.#releaseDelayed(), Math.max(0, next - Date.now()))
    }
  }

  // ------------------------------------------------------------------------------------------
  // dispatch

  #scheduleDispatch(): void {
    if (this.#dispatchScheduled || this.#closed) return
    this.#dispatchScheduled = true
    setImmediate(() => {
      this.#dispatchScheduled = false
      this.#dispatch()
    })
  }

  #dispatch(): void {
    if (this.#closed || this.#rr.length === 0) return
    let idle = 0
    while (idle < this.#rr.length) {
      if (this.#rrIndex >= this.#rr.length) this.#rrIndex = 0
      const w = this.#rr[this.#rrIndex++] as WorkerPeer
      const free = w.goodbye ? 0 : w.credit - w.inflight.size
      if (free <= 0) {
        idle++
        continue
      }
      const n = Math.min(free, this.#s.maxBatch)
      const batch: Message[] = []
      let bytes = 0
      while (batch.length < n) {
        const m = this.#takeReady()
        if (!m) break
        bytes += 4 + m.payload.length
        if (bytes > w.packLimit && batch.length > 0) {
          this.#front.push(m) // still ready: first of the next batch
          break
        }
        batch.push(m)
      }
      if (batch.length === 0) return
      idle = 0
      this.#sendBatch(w, batch)
    }
  }

  #sendBatch(w: WorkerPeer, batch: Message[]): void {
    const now = performance.now()
    const ppx = w.protocol === "ppx"
    const bodies: Buffer[] = []
    for (const m of batch) {
      m.attempt++
      if (m.attempt > 1) this.#stats.redelivered++
      m.state = "inflight"
      m.worker = w
      m.sentAt = now
      if (this.#s.ackTimeout > 0) m.deadline = now + this.#s.ackTimeout
      w.inflight.set(m.id, m)
      if (ppx) bodies.push(m.payload)
      else
        this.#writer?.write([w.routingId, encodeEnvelope(m.id, m.attempt), FRAME_EMPTY, m.payload])
    }
    if (ppx)
      this.#writer?.write([w.routingId, FRAME_TASKS, packTaskEnvelopes(batch), packBodies(bodies)])
    w.liveness.sent()
  }

  // ------------------------------------------------------------------------------------------
  // receiving

  async #receiveLoop(router: Router): Promise<void> {
    for (;;) {
      let msg: Buffer[]
      try {
        msg = await router.receive()
      } catch (err) {
        if (this.#closed || (err as { code?: string }).code === "EAGAIN") return
        throw err
      }
      try {
        this.#onMessage(msg)
      } catch (err) {
        this.#drop(`unexpected error handling a frame: ${errorMessage(err)}`)
      }
    }
  }

  #onMessage(msg: Buffer[]): void {
    const routingId = msg[0]
    const first = msg[1]
    if (routingId === undefined || first === undefined)
      return this.#drop("message without routing id or body")
    const key = routingId.toString("hex")
    const w = this.#workers.get(key)
    if (msg.length === 2 && first.length === 0) {
      // ROUTER_NOTIFY: the peer's connection dropped.
      if (w) this.#lose(w, "disconnected")
      else this.#gone.delete(key)
      return
    }
    if (w) w.liveness.seen()

    if (msg.length === 2 && first.length >= 1) {
      const cmd = first[0]
      if (cmd === PPP.READY) return this.#onReady(routingId, key, first)
      if (first.length !== 1) return this.#drop("single frame with unknown command", key)
      if (cmd === PPP.HEARTBEAT) {
        if (w) {
          if (w.protocol === "ppp" && w.inflight.size > 0) this.#onIdleHeartbeat(w)
        } else if (this.#gone.get(key) === "expired") {
          // A PPX worker we gave up on (it was silent) is back on the same connection: have it
          // reconnect and announce itself again rather than serve it as a plain PPP worker.
          this.#gone.delete(key)
          this.#writer?.write([routingId, FRAME_GOODBYE])
        } else if (this.#gone.get(key) === "departed") {
          // A worker that said GOODBYE and still heartbeats while it closes: it wants nothing.
          debug("%s: heartbeat from %s, which said goodbye: ignored", this.#name, key)
        } else {
          this.#register(routingId, key, null) // a Guide worker: any sign of life means ready
        }
        return
      }
      if (cmd === PPX.GOODBYE) {
        if (w) {
          // Confirm: nothing follows this GOODBYE on the connection, so the worker may close
          // once it has acked what it holds.
          if (!w.goodbye && w.protocol === "ppx") this.#writer?.write([routingId, FRAME_GOODBYE])
          w.goodbye = true
          if (w.inflight.size === 0) this.#depart(w)
        }
        return
      }
      return this.#drop(`unknown command 0x${cmd?.toString(16) ?? "?"}`, key)
    }

    if (msg.length === 4 && msg[2]?.length === 0 && first.length > 1) {
      // PPP reply: [envelope, "", body]
      return this.#onAck(w, key, first, msg[3] as Buffer)
    }
    if (first.length === 1) {
      const cmd = first[0]
      if (cmd === PPX.ACKS && msg.length === 4) {
        // [0x12, envelopes, replies]
        const envelopes = unpackEnvelopes(msg[2])
        const replies = envelopes && unpackBodies(msg[3], envelopes.length)
        if (!envelopes || !replies)
          return this.#drop("ACKS whose envelopes do not match its replies", key)
        for (let i = 0; i < envelopes.length; i++)
          this.#onAck(w, key, envelopes[i] as Buffer, replies[i] as Buffer)
        return
      }
      if (cmd === PPX.NACK && msg.length === 4) {
        let info: NackInfo
        try {
          info = decodeNack(msg[3])
        } catch (err) {
          return this.#drop(errorMessage(err), key)
        }
        return this.#onNack(w, key, msg[2] as Buffer, info)
      }
      if (cmd === PPX.EXTEND && msg.length >= 3) {
        for (let i = 2; i < msg.length; i++) this.#onExtend(w, key, msg[i] as Buffer)
        return
      }
    }
    this.#drop(`malformed message of ${msg.length - 1} frames`, key)
  }

  #drop(reason: string, key?: string): void {
    this.#stats.dropped++
    debug("%s: dropped from %s: %s", this.#name, key ?? "?", reason)
  }

  #onReady(routingId: Buffer, key: string, frame: Buffer): void {
    let hello
    try {
      hello = decodeReady(frame)
    } catch (err) {
      return this.#drop(errorMessage(err), key)
    }
    const existing = this.#workers.get(key)
    if (existing) {
      // A second READY from the same connection: take the new settings, keep what it holds.
      if (hello) {
        existing.protocol = "ppx"
        existing.credit = hello.credit
        existing.packLimit = packLimit(hello.maxMessageSize)
        existing.liveness = new Liveness({
          heartbeatInterval: hello.heartbeatInterval,
          liveness: hello.liveness,
        })
        if (hello.heartbeatInterval < this.#tickFor) this.#armTick(hello.heartbeatInterval)
      }
      existing.goodbye = false
      if (hello) this.#welcome(existing)
      this.#scheduleDispatch()
      return
    }
    this.#register(routingId, key, hello)
  }

  #register(routingId: Buffer, key: string, hello: ReturnType<typeof decodeReady>): void {
    this.#gone.delete(key)
    const w: WorkerPeer = {
      key,
      routingId: Buffer.from(routingId),
      protocol: hello ? "ppx" : "ppp",
      credit: hello ? hello.credit : 1,
      packLimit: packLimit(hello?.maxMessageSize),
      inflight: new Map(),
      liveness: new Liveness({
        heartbeatInterval: hello?.heartbeatInterval ?? this.#s.heartbeatInterval,
        liveness: hello?.liveness ?? this.#s.liveness,
      }),
      goodbye: false,
    }
    this.#workers.set(key, w)
    this.#rr.push(w)
    if (w.liveness.heartbeatInterval < this.#tickFor) this.#armTick(w.liveness.heartbeatInterval)
    if (hello) this.#welcome(w)
    debug("%s: worker %s ready (%s, credit %d)", this.#name, key, w.protocol, w.credit)
    this.emit("worker:ready", { workerId: key, credit: w.credit, protocol: w.protocol })
    this.#scheduleDispatch()
  }

  #welcome(w: WorkerPeer): void {
    this.#writer?.write([
      w.routingId,
      ...encodeWelcome({
        version: PPX.VERSION,
        heartbeatInterval: w.liveness.heartbeatInterval,
        liveness: w.liveness.liveness,
        maxMessageSize: this.#s.maxMessageSize,
      }),
    ])
    w.liveness.sent()
  }

  /** Finds the in-flight message an ack names; `undefined` (counted) for a stale or foreign one. */
  #claim(w: WorkerPeer | undefined, key: string, envFrame: Buffer): Message | undefined {
    const env = decodeEnvelope(envFrame)
    if (!env) {
      this.#drop("reply with an envelope that is not ours", key)
      return undefined
    }
    const m = w?.inflight.get(env.id)
    if (!m || m.attempt !== env.attempt || m.state !== "inflight") {
      this.#stats.staleAcks++
      debug(
        "%s: stale ack for %s attempt %d from %s",
        this.#name,
        env.id,
        env.attempt,
        w ? key : `${key} (not a registered worker)`,
      )
      return undefined
    }
    return m
  }

  #release(w: WorkerPeer, m: Message): void {
    w.inflight.delete(m.id)
    m.worker = undefined
    m.deadline = undefined
    if (w.goodbye && w.inflight.size === 0) this.#depart(w)
    else this.#scheduleDispatch()
  }

  #onAck(w: WorkerPeer | undefined, key: string, envFrame: Buffer, body: Buffer): void {
    const m = this.#claim(w, key, envFrame)
    if (!m || !w) return
    this.#release(w, m)
    this.#stats.acked++
    this.#latency.record(performance.now() - m.t0)
    if (m.durable) this.#remove_(m.id)
    const waiter = m.waiter
    this.#finish(m)
    waiter?.resolve(body)
  }

  #onNack(w: WorkerPeer | undefined, key: string, envFrame: Buffer, info: NackInfo): void {
    const m = this.#claim(w, key, envFrame)
    if (!m || !w) return
    this.#release(w, m)
    this.#stats.nacked++
    this.#fail(m, info.error, info.reject === true, info.delay)
  }

  /**
   * A plain PPP worker heartbeats only between jobs. A heartbeat sent well after it was given a
   * message means it is done with it without replying (its handler failed): retry elsewhere.
   * Heartbeats that crossed the dispatch on the wire (sent within an interval of it) are not that.
   */
  #onIdleHeartbeat(w: WorkerPeer): void {
    const now = performance.now()
    const dropped = [...w.inflight.values()].filter(
      (m) => now - (m.sentAt ?? now) > w.liveness.heartbeatInterval,
    )
    for (const m of dropped) {
      this.#release(w, m)
      this.#stats.nacked++
      this.#fail(
        m,
        "the worker went idle without replying (a plain PPP worker's handler failed)",
        false,
      )
    }
  }

  #onExtend(w: WorkerPeer | undefined, key: string, envFrame: Buffer): void {
    const env = decodeEnvelope(envFrame)
    if (!env) return this.#drop("extend with an envelope that is not ours", key)
    const m = w?.inflight.get(env.id)
    if (m && m.attempt === env.attempt && this.#s.ackTimeout > 0)
      m.deadline = performance.now() + this.#s.ackTimeout
  }

  /** An attempt failed: retry after a backoff, or dead-letter when attempts are used up. */
  #fail(m: Message, error: string, reject: boolean, delay?: number): void {
    m.lastError = error
    if (reject || m.attempt >= this.#s.maxAttempts) return this.#bury(m, error)
    const wait = delay ?? backoffDelay(m.attempt, this.#s.retryBackoff, this.#s.random)
    this.emit("message:nacked", { id: m.id, attempt: m.attempt, error, delay: wait })
    const notBefore = Date.now() + wait
    if (m.durable)
      this.#queueChange(() =>
        this.#updateQueue.push({ id: m.id, attempts: m.attempt, lastError: error, notBefore }),
      )
    if (wait === 0) this.#makeReadyFront([m])
    else this.#delay(m, notBefore)
  }

  #bury(m: Message, error: string): void {
    this.#stats.dead++
    debug("%s: message %s dead after %d attempts: %s", this.#name, m.id, m.attempt, error)
    // Every dead letter is kept, in a memory journal too, so it can be listed and replayed.
    const letter: DeadLetter = {
      id: m.id,
      payload: m.payload,
      attempts: m.attempt,
      lastError: error,
      enqueuedAt: m.enqueuedAt,
      deadAt: Date.now(),
    }
    this.#queueChange(() => this.#buryQueue.push(letter))
    const waiter = m.waiter
    this.#finish(m)
    this.emit("message:dead", { id: m.id, attempts: m.attempt, error })
    waiter?.reject(new DeadLetterError(m.id, m.attempt, error))
  }

  // ------------------------------------------------------------------------------------------
  // workers: heartbeats, loss

  /**
   * Runs the heartbeat and expiry checks four times per heartbeat interval of the fastest peer
   * (the sender's own, or a worker's that announced a shorter one).
   */
  #armTick(heartbeatInterval: number): void {
    clearInterval(this.#tick)
    this.#tickFor = heartbeatInterval
    this.#tick = setInterval(() => this.#onTick(), Math.max(10, Math.floor(heartbeatInterval / 4)))
    this.#tick.unref()
  }

  #onTick(): void {
    const now = performance.now()
    for (const w of [...this.#workers.values()]) {
      // A plain PPP worker sends nothing while it works: alive until its ack deadline.
      const busyPlain = w.protocol === "ppp" && w.inflight.size > 0
      if (!busyPlain && w.liveness.expired()) {
        this.#lose(w, `no heartbeat for ${Math.round(w.liveness.silence())} ms`)
        continue
      }
      if (w.liveness.heartbeatDue()) {
        this.#writer?.write([w.routingId, FRAME_HEARTBEAT])
        w.liveness.sent()
      }
      if (this.#s.ackTimeout > 0) {
        const expired: Message[] = []
        for (const m of w.inflight.values())
          if (m.deadline !== undefined && m.deadline <= now) expired.push(m)
        if (expired.length > 0 && w.protocol === "ppp") {
          // A plain worker says nothing while busy: past the deadline it is presumed hung.
          this.#lose(w, `no ack within ${this.#s.ackTimeout} ms`)
          continue
        }
        for (const m of expired) {
          this.#release(w, m)
          this.#requeue(m, `no ack within ${this.#s.ackTimeout} ms`)
        }
      }
    }
  }

  #requeue(m: Message, reason: string): void {
    m.lastError = reason
    this.emit("message:requeued", { id: m.id, attempt: m.attempt, reason })
    if (m.attempt >= this.#s.maxAttempts) return this.#bury(m, reason)
    if (m.durable)
      this.#queueChange(() =>
        this.#updateQueue.push({ id: m.id, attempts: m.attempt, lastError: reason }),
      )
    this.#makeReadyFront([m])
  }

  #lose(w: WorkerPeer, reason: string): void {
    if (this.#workers.get(w.key) !== w) return
    if (w.protocol === "ppx" && reason !== "disconnected") this.#forget(w.key, "expired")
    const held = [...w.inflight.values()]
    this.#remove(w)
    this.#stats.workersLost++
    debug("%s: worker %s lost (%s), requeueing %d", this.#name, w.key, reason, held.length)
    for (const m of held) {
      m.worker = undefined
      m.deadline = undefined
    }
    // Requeue all at the front in id order, then check attempts one by one.
    const back: Message[] = []
    for (const m of held) {
      m.lastError = `worker lost: ${reason}`
      this.emit("message:requeued", { id: m.id, attempt: m.attempt, reason: m.lastError })
      if (m.attempt >= this.#s.maxAttempts) this.#bury(m, m.lastError)
      else {
        const err = m.lastError
        if (m.durable)
          this.#queueChange(() =>
            this.#updateQueue.push({ id: m.id, attempts: m.attempt, lastError: err }),
          )
        back.push(m)
      }
    }
    this.#makeReadyFront(back)
    this.emit("worker:lost", { workerId: w.key, reason, requeued: back.length })
  }

  #remove(w: WorkerPeer): void {
    this.#workers.delete(w.key)
    const i = this.#rr.indexOf(w)
    if (i >= 0) this.#rr.splice(i, 1)
  }

  /** A worker that said GOODBYE holds nothing any more: forget it. */
  #depart(w: WorkerPeer): void {
    this.#remove(w)
    this.#forget(w.key, "departed")
  }

  #forget(key: string, why: "expired" | "departed"): void {
    this.#gone.delete(key)
    this.#gone.set(key, why)
    // Bounded: only the most recent ones matter (a worker comes back within seconds or never).
    if (this.#gone.size > 1024) this.#gone.delete(this.#gone.keys().next().value as string)
  }

  #onSendError(err: unknown, frames: Buffer[]): void {
    if (this.#closed) return
    const id = frames[0]
    const w = id ? this.#workers.get(id.toString("hex")) : undefined
    const code = (err as { code?: string }).code ?? errorMessage(err)
    if (w) this.#lose(w, `unreachable (${code})`)
    else debug("%s: send failed: %s", this.#name, code)
  }

  // ------------------------------------------------------------------------------------------
  // journal changes (acks, failures, dead letters), batched

  /** Queues the deletion of an acked message from the journal (no closure: this is per ack). */
  #remove_(id: string): void {
    this.#removeQueue.push(id)
    this.#changing ??= this.#changeLoop()
  }

  #queueChange(push: () => void): void {
    push()
    this.#changing ??= this.#changeLoop()
  }

  async #changeLoop(): Promise<void> {
    // Let the acks of this turn of the event loop gather into one batch.
    await new Promise<void>((r) => setImmediate(r))
    try {
      while (this.#removeQueue.length + this.#updateQueue.length + this.#buryQueue.length > 0) {
        const removes = this.#removeQueue
        const updates = this.#updateQueue
        const buries = this.#buryQueue
        this.#removeQueue = []
        this.#updateQueue = []
        this.#buryQueue = []
        try {
          if (updates.length > 0) await this.#journal.update(updates)
          if (buries.length > 0) await this.#journal.bury(buries)
          if (removes.length > 0) await this.#journal.remove(removes)
        } catch (err) {
          this.emit("error", journalWriteError(err))
        }
      }
    } finally {
      this.#changing = undefined
    }
    this.#checkDrained()
  }

  async #flushChanges(): Promise<void> {
    while (this.#changing) await this.#changing
  }

  // ------------------------------------------------------------------------------------------
  // queries

  /** Resolves when nothing is ready, delayed, in flight, being journaled or on disk. */
  drained(): Promise<void> {
    if (this.#isDrained() || this.#closed) return Promise.resolve()
    return new Promise((resolve) => this.#drainedWaiters.push(resolve))
  }

  #isDrained(): boolean {
    return (
      this.#messages.size === 0 &&
      this.#backlogCount === 0 &&
      this.#changing === undefined &&
      this.#appendQueue.length === 0
    )
  }

  #checkDrained(): void {
    if (this.#drainedWaiters.length === 0 || !this.#isDrained()) return
    for (const d of this.#drainedWaiters.splice(0)) d()
    this.emit("drained", {})
  }

  async flushJournal(): Promise<void> {
    while (this.#appending) await this.#appending
    await this.#flushChanges()
  }

  stats(): DispatcherStats {
    let inFlight = 0
    for (const w of this.#workers.values()) inFlight += w.inflight.size
    return {
      ready: this.#readyCount(),
      inFlight,
      delayed: this.#delayed.size,
      backlog: this.#backlogCount,
      dead: this.#stats.dead,
      sent: this.#stats.sent,
      acked: this.#stats.acked,
      nacked: this.#stats.nacked,
      redelivered: this.#stats.redelivered,
      staleAcks: this.#stats.staleAcks,
      dropped: this.#stats.dropped,
      workers: this.#workers.size,
      workersLost: this.#stats.workersLost,
      denied: this.#stats.denied,
      latency: this.#latency.summary(),
    }
  }

  /** The stats as metrics for the Prometheus text format (`prefix` e.g. "pirate_sender"). */
  metrics(prefix: string): Metric[] {
    const s = this.stats()
    const g = (name: string, help: string, value: number): Metric => ({
      name: `${prefix}_${name}`,
      help,
      type: "gauge",
      value,
    })
    const c = (name: string, help: string, value: number): Metric => ({
      name: `${prefix}_${name}_total`,
      help,
      type: "counter",
      value,
    })
    return [
      g("ready", "Messages waiting for a worker.", s.ready),
      g("in_flight", "Messages handed to a worker and not yet acked.", s.inFlight),
      g("delayed", "Messages waiting for their retry delay.", s.delayed),
      g("backlog", "Pending messages on disk not yet loaded into memory.", s.backlog),
      g("dead", "Dead letters in the journal.", s.dead),
      g("workers", "Connected workers.", s.workers),
      c("sent", "Messages accepted.", s.sent),
      c("acked", "Messages acknowledged by a worker.", s.acked),
      c("nacked", "Handler failures reported by workers.", s.nacked),
      c("redelivered", "Messages delivered again after a failure or a lost worker.", s.redelivered),
      c("stale_acks", "Acks ignored because their attempt was no longer in flight.", s.staleAcks),
      c("dropped", "Malformed or unexpected frames dropped.", s.dropped),
      c("workers_lost", "Workers lost.", s.workersLost),
      c("denied", "Connections refused by the CURVE allow list.", s.denied),
      {
        name: `${prefix}_ack_latency_seconds`,
        help: "Time from acceptance to ack.",
        type: "summary",
        value: s.latency,
      },
    ]
  }

  /** Workers by id with what they hold. */
  workers(): { workerId: string; protocol: "ppp" | "ppx"; credit: number; inFlight: number }[] {
    return [...this.#workers.values()].map((w) => ({
      workerId: w.key,
      protocol: w.protocol,
      credit: w.credit,
      inFlight: w.inflight.size,
    }))
  }
}

function setRouterNotify(router: Router): void {
  // zeromq.js exposes raw option setters as protected methods; the option is a libzmq draft.
  const raw = router as unknown as { setInt32Option(option: number, value: number): void }
  try {
    raw.setInt32Option(ZMQ_ROUTER_NOTIFY, ZMQ_NOTIFY_DISCONNECT)
  } catch (err) {
    debug("ROUTER_NOTIFY unavailable, relying on heartbeats: %s", errorMessage(err))
  }
}

/** A failed journal write as a `PirateError` (kept as it is when it already is one). */
function journalWriteError(err: unknown): PirateError {
  if (err instanceof PirateError) return err
  return new PirateError("PIRATE_JOURNAL_IO", `journal write failed: ${errorMessage(err)}`, {
    cause: err,
  })
}

const ACCEPTED = Promise.resolve()

/** The performance.now() time of an epoch-ms timestamp. */
function sinceEpoch(epochMs: number): number {
  return performance.now() - (Date.now() - epochMs)
}

function byId(a: Message, b: Message): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
