/**
 * The queue core shared by `Sender` and `ParanoidPirateQueue`: a ROUTER that workers connect to,
 * the in-memory window of messages over a `Journal` (with the backlog on disk beyond it),
 * credit-based dispatch, acks, heartbeats, redelivery of a lost worker's messages, retries with
 * backoff and dead letters. The parts live beside it: admission (who gets in, who waits), the
 * ready and delay queues, worker sessions, the journal lanes, the counters, the inbound reader.
 */
import { EventEmitter } from "node:events"
import { Router, capability } from "zeromq"
import { debug } from "../../../lib/debug.js"
import {
  PirateError,
  abortedError,
  closedError,
  errorMessage,
  toError,
} from "../../../lib/errors.js"
import { IdGenerator } from "../../../lib/journal/ids.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Metric } from "../../../lib/metrics.js"
import {
  FRAME_EMPTY,
  FRAME_GOODBYE,
  FRAME_TASKS,
  encodeEnvelope,
  packBodies,
  packTaskEnvelopes,
} from "../../../lib/protocol.js"
import { applyCurveServer } from "../../../lib/security.js"
import { SocketWriter, bindRetrying } from "../../../lib/writer.js"
import { Admission } from "./admission.js"
import { Counters, statsMetrics, type DispatcherStats } from "./counters.js"
import { dispatchInbound } from "./inbound.js"
import { JournalLanes, type AppendItem } from "./lanes.js"
import { message, sinceEpoch, type Message, type Waiter, type WorkerPeer } from "./message.js"
import { DelayQueue, ReadyQueue } from "./ready.js"
import { Sessions } from "./sessions.js"
import type { DispatcherEvents, DispatcherSettings } from "./types.js"
import { WorkerRegistry } from "./workers.js"

/** libzmq draft option ZMQ_ROUTER_NOTIFY and its "disconnect" flag. */
const ZMQ_ROUTER_NOTIFY = 97
const ZMQ_NOTIFY_DISCONNECT = 2

/** Reads the sizes of a core's internal structures (tests of bounded memory). */
export const internals = Symbol("zeromq-pirate.internals")

const ACCEPTED = Promise.resolve()

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
  readonly #ready = new ReadyQueue()
  readonly #delayed = new DelayQueue((due) => this.#makeReadyFront(due))
  readonly #workers = new WorkerRegistry()
  readonly #adm: Admission
  readonly #lanes: JournalLanes
  readonly #n = new Counters()
  readonly #sessions: Sessions
  #dispatchScheduled = false
  /** The greatest id given to a message that went into the window (not to disk). */
  #lastWindowId: string | undefined
  #refilling: Promise<void> | undefined
  #refillRetry: NodeJS.Timeout | undefined
  /** The backlog found at open has an estimated size in bytes until its first page is read. */
  #bytesEstimated = false
  #drainedWaiters = new Set<{ resolve: () => void; reject: (err: Error) => void }>()
  #wasDrained = true

  constructor(name: string, settings: DispatcherSettings, journal: Journal) {
    super()
    this.#name = name
    this.#s = settings
    this.#journal = journal
    this.#adm = new Admission(
      { ...settings, persistent: journal.persistent },
      {
        inWindow: () => this.#messages.size,
        accept: (frame) => this.#accept(frame),
        spill: (frame) => this.#spill(frame),
        backpressure: (event) => this.emit("backpressure", event),
      },
    )
    this.#lanes = new JournalLanes(journal, settings.durability === "fsync", {
      appended: (items) => this.#appended(items),
      appendFailed: (items, err) => this.#appendFailed(items, err),
      changeFailed: (err) => this.emit("error", err),
      idle: () => this.#checkDrained(),
    })
    const emit = this.emit.bind(this)
    this.#sessions = new Sessions({
      name,
      settings,
      counters: this.#n,
      lanes: this.#lanes,
      workers: this.#workers,
      delayed: this.#delayed,
      write: (frames) => this.#writer?.write(frames),
      makeReadyFront: (list) => this.#makeReadyFront(list),
      finish: (m) => this.#finish(m),
      scheduleDispatch: () => this.#scheduleDispatch(),
      emit,
    })
  }

  get endpoint(): string | undefined {
    return this.#endpoint
  }

  // ------------------------------------------------------------------------------------------
  // lifecycle

  async open(bind: string): Promise<void> {
    await this.#journal.open()
    let router: Router | undefined
    try {
      this.#ids = new IdGenerator(await this.#journal.lastId())
      const js = await this.#journal.stats()
      this.#n.dead = js.dead
      if (js.pending > 0) {
        this.#adm.count = js.pending
        this.#adm.until = await this.#journal.lastId()
        this.#bytesEstimated = true
        this.#wasDrained = false
      }
      router = new Router({
        linger: 0,
        mandatory: true,
        sendTimeout: this.#s.sendTimeout,
        maxMessageSize: this.#s.maxMessageSize,
        sendHighWaterMark: 100_000,
        receiveHighWaterMark: 100_000,
      })
      // Tells us at once when a worker's connection drops (crash, kill), so its messages are
      // redelivered without waiting for the heartbeat timeout. Heartbeats remain the authority
      // for hung workers.
      if (capability.draft) setRouterNotify(router)
      const r = router
      if (this.#s.curve)
        this.#unregisterCurve = await applyCurveServer(r, this.#s.curve, () => this.#n.denied++)
      await bindRetrying(router, bind)
      this.#router = router
      this.#endpoint = router.lastEndpoint ?? bind
      this.#writer = new SocketWriter(router, (err, frames) => this.#onSendError(err, frames))
      this.#receiveLoop(router).catch((err: unknown) => this.emit("error", toError(err)))
      this.#sessions.start()
      await this.#refill()
    } catch (err) {
      // Leave nothing behind: a failed open may be retried with another endpoint.
      this.#closed = true
      this.#sessions.stop()
      this.#unregisterCurve?.()
      router?.close()
      this.#adm.close(closedError(this.#name))
      await this.#journal.close()
      throw err
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const errors: unknown[] = []
    this.#sessions.stop()
    clearTimeout(this.#refillRetry)
    this.#delayed.stop()
    const closed = closedError(this.#name)
    this.#adm.close(closed)
    for (const w of this.#workers.values())
      if (w.protocol === "ppx") this.#writer?.write([w.routingId, FRAME_GOODBYE])
    this.#lanes.close()
    for (const step of [
      async () => {
        await this.#writer?.flushed()
        // No unbind() before close(): libzmq 4.3.5 can abort (pipe.cpp assertion) when an unbound
        // socket's pipes are still terminating as it closes. A restart on the same endpoint
        // retries its bind while the port is released (bindRetrying).
        this.#router?.close()
        this.#unregisterCurve?.()
      },
      () => this.#refilling,
      () => this.#lanes.flush(),
      () => this.#journal.close(),
    ]) {
      try {
        await step()
      } catch (err) {
        errors.push(err)
      }
    }
    for (const m of this.#messages.values()) {
      m.waiter?.reject(closed)
      m.waiter = undefined
    }
    const drained = this.#isDrained()
    for (const d of this.#drainedWaiters) {
      if (drained) d.resolve()
      else d.reject(closed)
    }
    this.#drainedWaiters.clear()
    if (errors.length > 0) throw new AggregateError(errors, `${this.#name} close failed`)
  }

  // ------------------------------------------------------------------------------------------
  // producing

  /** A durable send: resolves with its id once as durable as configured (see `Admission`). */
  send(frame: Buffer, signal?: AbortSignal): Promise<string> {
    return this.#adm.send(frame, signal)
  }

  /**
   * Reserves a place in the window for one message (`request()`, a queue's request): at once
   * when there is room, else waits. The caller must `submit()` right after.
   */
  reserve(signal?: AbortSignal): Promise<void> | undefined {
    return this.#adm.reserve(signal)
  }

  /**
   * Accepts a message whose place was reserved, journals it when durable (group commit) and makes
   * it ready; `accepted` resolves once as durable as configured.
   */
  submit(
    payload: Buffer,
    options: { durable: boolean; waiter?: Waiter },
  ): { id: string; accepted: Promise<void> } {
    if (this.#closed) throw closedError(this.#name)
    this.#adm.useReservation()
    return this.#enter(payload, options.durable, options.waiter)
  }

  #accept(frame: Buffer): Promise<string> {
    const { id, accepted } = this.#enter(frame, true, undefined)
    return accepted === ACCEPTED ? Promise.resolve(id) : accepted.then(() => id)
  }

  #enter(
    payload: Buffer,
    wantDurable: boolean,
    waiter: Waiter | undefined,
  ): { id: string; accepted: Promise<void> } {
    const id = this.#ids.next()
    // Only a persistent journal keeps pending messages; a memory journal only keeps dead letters.
    const durable = wantDurable && this.#journal.persistent
    const m = message({
      id,
      payload,
      attempt: 0,
      enqueuedAt: Date.now(),
      t0: performance.now(),
      state: "appending",
      durable,
    })
    m.waiter = waiter
    this.#messages.set(id, m)
    this.#lastWindowId = id
    this.#n.sent++
    this.#wasDrained = false
    if (!durable) {
      this.#makeReady(m)
      return { id, accepted: ACCEPTED }
    }
    return { id, accepted: this.#journalNew(m, id, payload, m.enqueuedAt) }
  }

  /** A send that waits on disk: journaled, counted as backlog, not kept in memory. */
  #spill(frame: Buffer): Promise<string> {
    const id = this.#ids.next()
    const adm = this.#adm
    // The first message of a new backlog: every message in memory is older than it, so the
    // backlog is exactly what lies after the newest of them.
    if (!adm.backlogActive && this.#lastWindowId !== undefined)
      if (adm.after === undefined || this.#lastWindowId > adm.after) adm.after = this.#lastWindowId
    adm.spilling++
    adm.spillingBytes += frame.length
    this.#n.sent++
    this.#wasDrained = false
    const accepted = this.#journalNew(undefined, id, frame, Date.now())
    return accepted === ACCEPTED ? Promise.resolve(id) : accepted.then(() => id)
  }

  #journalNew(m: Message | undefined, id: string, payload: Buffer, at: number): Promise<void> {
    const entry: JournalEntry = { id, payload, attempts: 0, enqueuedAt: at }
    if (this.#s.durability === "memory") {
      this.#lanes.append({ entry, message: m, settle: undefined })
      return ACCEPTED
    }
    return new Promise<void>((resolve, reject) =>
      this.#lanes.append({
        entry,
        message: m,
        settle: (err) => (err ? reject(err) : resolve()),
      }),
    )
  }

  #appended(items: AppendItem[]): void {
    const adm = this.#adm
    for (const { entry, message: m, settle } of items) {
      if (m) {
        if (m.state === "appending") this.#makeReady(m)
      } else {
        adm.spilling--
        adm.spillingBytes -= entry.payload.length
        adm.count++
        adm.bytes += entry.payload.length
        if (adm.until === undefined || entry.id > adm.until) adm.until = entry.id
      }
      settle?.(undefined)
    }
    this.#maybeRefill()
    adm.admit()
  }

  #appendFailed(items: AppendItem[], err: PirateError): void {
    // With durability "memory" the senders were told yes already: keep their messages in memory
    // (as durable as promised) and tell the operator; otherwise each sender gets the error.
    const kept = this.#s.durability === "memory"
    for (const { entry, message: m, settle } of items) {
      if (!m) {
        this.#adm.spilling--
        this.#adm.spillingBytes -= entry.payload.length
        if (kept) {
          const back = message({
            ...entry,
            attempt: 0,
            t0: performance.now(),
            state: "ready",
            durable: false,
          })
          this.#messages.set(back.id, back)
          this.#makeReady(back)
        }
      } else if (m.state === "appending") {
        if (kept) {
          m.durable = false
          this.#makeReady(m)
        } else {
          const waiter = m.waiter
          this.#finish(m)
          waiter?.reject(err)
        }
      }
      settle?.(err)
    }
    if (kept) this.emit("error", err)
    this.#adm.admit()
    this.#checkDrained()
  }

  /** Cancels a message nobody waits for any more (an aborted request). */
  cancel(id: string): void {
    const m = this.#messages.get(id)
    if (!m) return
    m.waiter = undefined
    if (m.state !== "ready" && m.state !== "delayed") return
    if (m.state === "ready") {
      m.state = "done"
      this.#ready.discard()
    } else this.#delayed.delete(m)
    this.#finish(m)
    if (m.durable) this.#lanes.remove(m.id)
  }

  // ------------------------------------------------------------------------------------------
  // the window and the backlog

  #makeReady(m: Message): void {
    this.#ready.push(m)
    this.#scheduleDispatch()
  }

  #makeReadyFront(list: Message[]): void {
    if (list.length === 0) return
    this.#ready.pushFront(list)
    this.#scheduleDispatch()
  }

  /** A message left the window (acked, dead, cancelled): page in backlog, let producers in. */
  #finish(m: Message): void {
    m.state = "done"
    this.#messages.delete(m.id)
    this.#maybeRefill()
    this.#adm.admit()
    this.#checkDrained()
  }

  #maybeRefill(): void {
    // Page in by halves of the window, not one message per ack.
    if (this.#adm.count > 0 && !this.#closed && this.#messages.size <= this.#s.window / 2)
      this.#refilling ??= this.#refill()
  }

  /** Loads backlog from the journal into the window, oldest first. */
  async #refill(): Promise<void> {
    const adm = this.#adm
    try {
      while (adm.count > 0 && !this.#closed) {
        const room = adm.pageRoom()
        if (room <= 0) return
        const until = adm.until
        const range = { after: adm.after, until }
        const page = await this.#journal.pending({ ...defined(range), limit: room })
        let loaded = 0
        let bytes = 0
        const now = Date.now()
        for (const e of page) {
          adm.after = e.id
          bytes += e.payload.length
          if (this.#messages.has(e.id)) continue
          loaded++
          this.#load(e, now)
        }
        if (this.#bytesEstimated && page.length > 0) {
          // A backlog found at open: its size in bytes is estimated from its first page.
          this.#bytesEstimated = false
          adm.bytes = Math.round((bytes / page.length) * adm.count)
        }
        adm.bytes = Math.max(0, adm.bytes - bytes)
        if (page.length < room && adm.until === until) {
          adm.count = 0 // everything up to `until` is in memory, and nothing was added
          adm.bytes = 0
        } else adm.count = Math.max(0, adm.count - loaded)
        if (adm.count === 0 && page.length === room) {
          // Exactly a page left, or counts that drifted: ask the journal.
          const more = await this.#journal.pending({
            ...defined({ after: adm.after, until: adm.until }),
            limit: 1,
          })
          if (more.length > 0) adm.count = 1
        }
      }
    } catch (err) {
      if (this.#closed) return
      // Nobody waits for a page: report it and try again shortly.
      this.emit("error", toError(err))
      this.#refillRetry = setTimeout(() => this.#maybeRefill(), 1000)
      this.#refillRetry.unref()
    } finally {
      this.#refilling = undefined
      this.#adm.admit()
      this.#checkDrained()
    }
  }

  #load(e: JournalEntry, now: number): void {
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
    if (e.notBefore !== undefined && e.notBefore > now) this.#delayed.add(m, e.notBefore)
    else this.#makeReady(m)
  }

  /** Adds entries that were replayed from the dead letters in the journal back to the window. */
  requeueReplayed(entries: readonly JournalEntry[]): void {
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
    this.#n.dead = Math.max(0, this.#n.dead - list.length)
    if (list.length > 0) this.#wasDrained = false
    this.#makeReadyFront(list)
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
    while (!this.#closed && this.#ready.size > 0) {
      const next = this.#workers.nextFree()
      if (!next) return
      const { worker: w, free } = next
      const n = Math.min(free, this.#s.maxBatch)
      const batch: Message[] = []
      let bytes = 0
      while (batch.length < n) {
        const m = this.#ready.take()
        if (!m) break
        bytes += 4 + m.payload.length
        if (bytes > w.packLimit && batch.length > 0) {
          this.#ready.putBack(m) // still ready: first of the next batch
          break
        }
        batch.push(m)
      }
      if (batch.length === 0) return
      this.#sendBatch(w, batch)
    }
  }

  #sendBatch(w: WorkerPeer, batch: Message[]): void {
    const now = performance.now()
    const ppx = w.protocol === "ppx"
    const bodies: Buffer[] = []
    for (const m of batch) {
      m.attempt++
      if (m.attempt > 1) this.#n.redelivered++
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
        dispatchInbound(msg, this.#sessions)
      } catch (err) {
        this.#sessions.drop(`unexpected error handling a frame: ${errorMessage(err)}`)
      }
    }
  }

  #onSendError(err: unknown, frames: Buffer[]): void {
    if (this.#closed) return
    const id = frames[0]
    const w = id ? this.#workers.get(id.toString("hex")) : undefined
    const code = (err as { code?: string }).code ?? errorMessage(err)
    if (w) this.#sessions.lose(w, `unreachable (${code})`)
    else debug("%s: send failed: %s", this.#name, code)
  }

  // ------------------------------------------------------------------------------------------
  // queries

  /**
   * Resolves when nothing is ready, delayed, in flight, being journaled or on disk; rejects with
   * `PIRATE_CLOSED` when the core closes first with messages pending, `PIRATE_ABORTED` on abort.
   */
  drained(signal?: AbortSignal): Promise<void> {
    if (this.#isDrained()) return Promise.resolve()
    if (this.#closed) return Promise.reject(closedError(this.#name))
    if (signal?.aborted) return Promise.reject(abortedError(signal))
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#drainedWaiters.delete(entry)
        reject(abortedError(signal as AbortSignal))
      }
      const entry = {
        resolve: () => {
          signal?.removeEventListener("abort", onAbort)
          resolve()
        },
        reject: (err: Error) => {
          signal?.removeEventListener("abort", onAbort)
          reject(err)
        },
      }
      this.#drainedWaiters.add(entry)
      signal?.addEventListener("abort", onAbort, { once: true })
    })
  }

  #isDrained(): boolean {
    return (
      this.#messages.size === 0 &&
      this.#adm.count === 0 &&
      this.#adm.spilling === 0 &&
      this.#lanes.idle
    )
  }

  /** Resolves waiters and emits `drained` each time the core becomes drained. */
  #checkDrained(): void {
    const drained = this.#isDrained()
    if (drained && !this.#wasDrained) {
      for (const d of this.#drainedWaiters) d.resolve()
      this.#drainedWaiters.clear()
      this.emit("drained", {})
    }
    this.#wasDrained = drained
  }

  /** Resolves once every journal write queued so far is done. */
  async flushJournal(): Promise<void> {
    await this.#lanes.flush()
  }

  /** Counters and gauges; also after close (the final figures). */
  stats(): DispatcherStats {
    let inFlight = 0
    for (const w of this.#workers.values()) inFlight += w.inflight.size
    const adm = this.#adm
    return this.#n.stats({
      ready: this.#ready.size,
      inFlight,
      delayed: this.#delayed.size,
      backlog: adm.count + adm.spilling,
      backlogBytes: adm.bytes + adm.spillingBytes,
      waiting: adm.waiting,
      workers: this.#workers.size,
    })
  }

  /** The stats as metrics for the Prometheus text format (`prefix` e.g. "pirate_sender"). */
  metrics(prefix: string): Metric[] {
    return statsMetrics(prefix, this.stats())
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

  /** Sizes of every internal map and queue: all 0 when nothing is pending and nobody waits. */
  [internals](): Record<string, number> {
    return {
      messages: this.#messages.size,
      ready: this.#ready.held,
      delayed: this.#delayed.size,
      drainedWaiters: this.#drainedWaiters.size,
      backlog: this.#adm.count,
      ...this.#adm.sizes(),
      ...this.#lanes.sizes(),
    }
  }
}

/** Re-emits every core event on the public object. */
export function forward(core: Dispatcher, target: EventEmitter): void {
  const names: (keyof DispatcherEvents)[] = [
    "worker:ready",
    "worker:lost",
    "message:requeued",
    "message:nacked",
    "message:dead",
    "backpressure",
    "drained",
    "error",
  ]
  for (const name of names) core.on(name, (payload: unknown) => target.emit(name, payload))
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

/** The range fields that are set (exactOptionalPropertyTypes). */
function defined(range: { after: string | undefined; until: string | undefined }): {
  after?: string
  until?: string
} {
  const out: { after?: string; until?: string } = {}
  if (range.after !== undefined) out.after = range.after
  if (range.until !== undefined) out.until = range.until
  return out
}
