/**
 * The queue core shared by `Sender` and `ParanoidPirateQueue`: a ROUTER that workers connect to,
 * the in-memory window of messages over a `Journal` (with the backlog on disk beyond it),
 * credit-based dispatch, acks, heartbeats, redelivery of a lost worker's messages, retries with
 * backoff and dead letters. The parts live beside it: admission (who gets in, who waits), the
 * ready and delay queues, worker sessions, the journal lanes, the counters, the inbound reader.
 */
import { EventEmitter } from "node:events"
import type { Router } from "zeromq"
import { bodyLength } from "../../../lib/body.js"
import { debug } from "../../../lib/debug.js"
import {
  PirateError,
  closedError,
  errorCode,
  errorMessage,
  toError,
  tooLargeError,
} from "../../../lib/errors.js"
import { IdGenerator } from "../../../lib/journal/ids.js"
import { journalSenderId } from "../../../lib/journal/sender-id.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Metric } from "../../../lib/metrics.js"
import { FRAME_GOODBYE } from "../../../lib/protocol.js"
import { applyCurveServer, watchRefusals } from "../../../lib/security.js"
import { SocketWriter, bindRetrying } from "../../../lib/writer.js"
import { Admission } from "./admission.js"
import { Counters, statsMetrics, type DispatcherStats } from "./counters.js"
import { receiveLoop } from "./inbound.js"
import { ACCEPTED, Intake, KEEP_WINDOWS } from "./intake.js"
import { JournalLanes } from "./lanes.js"
import { fromEntry, message, ownPayload, type Message, type Waiter } from "./message.js"
import { DelayQueue, ReadyQueue } from "./ready.js"
import { BacklogPager } from "./pager.js"
import { DrainWatch } from "./drain-watch.js"
import { workerRouter } from "./router.js"
import { Sessions } from "./sessions.js"
import type { DispatcherEvents, DispatcherSettings } from "./types.js"
import { WorkerRegistry, type WorkerInfo } from "./workers.js"

/** Reads the sizes of a core's internal structures (tests of bounded memory). */
export const internals = Symbol("zeromq-pirate.internals")

/**
 * Turns a message read back from the journal (at open, or paged in later) into what goes to the
 * workers and who waits for its reply: a queue journals its requests with their request ids and
 * unwraps them here.
 */
export type RestoreHook = (entry: JournalEntry) => { payload: Buffer; waiter: Waiter | undefined }

export class Dispatcher extends EventEmitter<DispatcherEvents> {
  readonly #s: DispatcherSettings
  readonly #journal: Journal
  readonly #name: string
  readonly #restore: RestoreHook | undefined
  #router: Router | undefined
  #writer: SocketWriter | undefined
  #ids = new IdGenerator()
  #endpoint: string | undefined
  /** Announced in WELCOME: workers key their dedupe records on it. */
  #senderId: string | undefined
  #closed = false
  #unregisterCurve: (() => void) | undefined

  /**
   * The messages in memory (the window) are counted, not kept in a map by id: a map of thousands
   * of string keys costs a cache miss or more per look-up, three per message. Only those that
   * need finding by id are kept by id: the ones somebody waits for (a `request()`, to cancel or
   * reject at close).
   */
  #held = 0
  /** Payload bytes of the messages held (bounded by `windowBytes`). */
  #windowBytes = 0
  readonly #waited = new Map<string, Message>()
  /**
   * Replayed dead letters whose ids lie ahead of the paging cursor: they went to the window at
   * once, so the pager skips them when it reads that far, also once they are acked (their
   * removal may not be written yet). Forgotten as the cursor passes them, or when nothing is
   * left to page.
   */
  readonly #replayed = new Set<string>()
  readonly #ready = new ReadyQueue()
  readonly #delayed = new DelayQueue((due) => this.#makeReadyFront(due))
  readonly #workers = new WorkerRegistry()
  readonly #adm: Admission
  readonly #lanes: JournalLanes
  readonly #intake: Intake
  readonly #n = new Counters()
  readonly #sessions: Sessions
  #dispatchScheduled = false
  /** The greatest id given to a message that went into the window (not to disk). */
  #lastWindowId: string | undefined
  readonly #pager: BacklogPager
  readonly #drain = new DrainWatch(
    () => this.#isDrained(),
    () => this.emit("drained", {}),
  )

  constructor(name: string, settings: DispatcherSettings, journal: Journal, restore?: RestoreHook) {
    super()
    this.#name = name
    this.#restore = restore
    this.#s = settings
    this.#journal = journal
    this.#adm = new Admission(
      { ...settings, persistent: journal.persistent },
      {
        inWindow: () => this.#held,
        inWindowBytes: () => this.#windowBytes,
        accept: (frame) => this.#accept(frame),
        spill: (frame) => this.#spill(frame),
        backpressure: (event) => this.emit("backpressure", event),
      },
    )
    this.#intake = new Intake({
      admission: this.#adm,
      durability: settings.durability,
      keep: KEEP_WINDOWS * settings.window,
      windowBytes: settings.windowBytes,
      inWindowBytes: () => this.#windowBytes,
      append: (item) => this.#lanes.append(item),
      lastWindowId: () => this.#lastWindowId,
      hold: (m) => this.#hold(m),
      makeReady: (m) => this.#makeReady(m),
      finish: (m) => this.#finish(m),
      pokePager: () => this.#pager.poke(),
      checkDrained: () => this.#checkDrained(),
      error: (err) => this.emit("error", err),
    })
    this.#lanes = new JournalLanes(journal, settings.durability === "fsync", {
      appended: (items) => this.#intake.appended(items),
      appendFailed: (items, err) => this.#intake.appendFailed(items, err),
      changeFailed: (err) => this.emit("error", err),
      idle: () => this.#checkDrained(),
    })
    this.#pager = new BacklogPager({
      journal,
      admission: this.#adm,
      window: settings.window,
      windowBytes: settings.windowBytes,
      inWindow: () => this.#held,
      inWindowBytes: () => this.#windowBytes,
      skip: (id) => this.#replayed.delete(id),
      kept: () => this.#intake.kept,
      keptPage: (limit) => this.#intake.keptPage(limit),
      dropKept: (lastId) => this.#intake.dropKept(lastId),
      load: (e, now) => this.#load(e, now),
      closed: () => this.#closed,
      paged: () => {
        if (this.#adm.count === 0) this.#replayed.clear()
        this.#adm.admit()
        this.#checkDrained()
      },
      error: (err) => this.emit("error", err),
    })
    const emit = this.emit.bind(this)
    this.#sessions = new Sessions({
      name,
      settings,
      counters: this.#n,
      lanes: this.#lanes,
      workers: this.#workers,
      delayed: this.#delayed,
      senderId: () => this.#senderId,
      write: (frames) => this.#writer?.write(frames),
      makeReadyFront: (list) => this.#makeReadyFront(list),
      withdraw: (m) => this.#withdraw(m),
      finish: (m) => this.#finish(m),
      leave: (m) => this.#leave(m),
      settled: () => this.#settled(),
      scheduleDispatch: () => this.#scheduleDispatch(),
      emit,
    })
  }

  get endpoint(): string | undefined {
    return this.#endpoint
  }

  // ------------------------------------------------------------------------------------------
  // lifecycle

  /** Opens the journal and binds `bind`, the endpoint of the option named `option` (for errors). */
  async open(bind: string, option = "bind"): Promise<void> {
    await this.#journal.open()
    let router: Router | undefined
    try {
      const lastId = await this.#journal.lastId()
      this.#ids = new IdGenerator(lastId)
      this.#senderId = await journalSenderId(this.#journal)
      const js = await this.#journal.stats()
      this.#n.dead = js.dead
      if (js.pending > 0) {
        this.#pager.found(js.pending, lastId)
        this.#drain.busy()
      }
      router = workerRouter(this.#s)
      const r = router
      if (this.#s.curve) this.#unregisterCurve = await applyCurveServer(r, this.#s.curve)
      await bindRetrying(router, bind, option)
      // Every refused handshake, the ZAP handler's denials included, is reported here once. The
      // monitor starts after the bind: with it attached, libzmq reports each failed bind of the
      // retries as an event, and a bind can then fail with EAGAIN instead of EADDRINUSE.
      if (this.#s.curve) void watchRefusals(r, () => this.#n.denied++)
      this.#router = router
      this.#endpoint = router.lastEndpoint ?? bind
      this.#writer = new SocketWriter(router, (err, frames) => this.#onSendError(err, frames))
      receiveLoop(router, this.#sessions, () => this.#closed).catch((err: unknown) =>
        this.emit("error", toError(err)),
      )
      this.#sessions.start()
      await this.#pager.start()
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
    this.#pager.stop()
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
      () => this.#pager.running,
      () => this.#lanes.flush(),
      () => this.#journal.close(),
    ]) {
      try {
        await step()
      } catch (err) {
        errors.push(err)
      }
    }
    for (const m of this.#waited.values()) {
      m.waiter?.reject(closed)
      m.waiter = undefined
    }
    this.#waited.clear()
    this.#drain.close(closed)
    if (errors.length > 0) throw new AggregateError(errors, `${this.#name} close failed`)
  }

  // ------------------------------------------------------------------------------------------
  // producing

  /** A durable send: resolves with its id once as durable as configured (see `Admission`). */
  send(frame: Buffer, signal?: AbortSignal): Promise<string> {
    const tooLarge = this.tooLarge(frame)
    if (tooLarge) return Promise.reject(tooLarge)
    return this.#adm.send(frame, signal)
  }

  /**
   * `PIRATE_TOO_LARGE` for a payload larger than this side's own `maxMessageSize` allows (its
   * workers' limits match it by default): such a message is refused before it is journaled.
   */
  tooLarge(frame: Buffer): PirateError | undefined {
    const max = this.#s.maxMessageSize
    const length = bodyLength(frame)
    if (length + 4 <= max) return undefined
    return tooLargeError(`a payload for this ${this.#name}`, length, max)
  }

  /**
   * Reserves a place in the window for one message of `bytes` (`request()`, a queue's request),
   * `submit()` then takes that payload: at once
   * when there is room, else waits. The caller must `submit()` right after.
   */
  reserve(bytes: number, signal?: AbortSignal): Promise<void> | undefined {
    return this.#adm.reserve(signal, bytes)
  }

  /**
   * Accepts a message whose place was reserved, journals it when durable (group commit) and makes
   * it ready; `accepted` resolves once as durable as configured. `stored` is what to journal when
   * it is not the payload itself (see `RestoreHook`).
   */
  submit(
    payload: Buffer,
    options: { durable: boolean; waiter?: Waiter; stored?: Buffer },
  ): { id: string; accepted: Promise<unknown> } {
    if (this.#closed) throw closedError(this.#name)
    this.#adm.useReservation(payload.length)
    return this.#enter(payload, options.durable, options.waiter, options.stored)
  }

  #accept(frame: Buffer): Promise<string> {
    const { id, accepted } = this.#enter(frame, true, undefined)
    // A journaled send's promise resolves with its id: no second promise to map it.
    return accepted === ACCEPTED ? Promise.resolve(id) : (accepted as Promise<string>)
  }

  #enter(
    payload: Buffer,
    wantDurable: boolean,
    waiter: Waiter | undefined,
    stored = payload,
  ): { id: string; accepted: Promise<unknown> } {
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
    this.#hold(m)
    this.#lastWindowId = id
    this.#n.sent++
    this.#drain.busy()
    if (!durable) {
      this.#makeReady(m)
      return { id, accepted: ACCEPTED }
    }
    return { id, accepted: this.#intake.journal(m, id, stored, m.enqueuedAt) }
  }

  /** A send that waits on disk (see `Intake.spill()`). */
  #spill(frame: Buffer): Promise<string> {
    this.#n.sent++
    this.#drain.busy()
    return this.#intake.spill(this.#ids.next(), frame)
  }

  /** Cancels a message nobody waits for any more (an aborted request). */
  cancel(id: string): void {
    const m = this.#waited.get(id)
    if (!m) return
    m.waiter = undefined
    if (m.state !== "ready" && m.state !== "delayed") return
    this.#withdraw(m)
    this.#finish(m)
    if (m.durable) this.#lanes.remove(m.id)
  }

  /** Takes a ready or delayed message out of its queue. */
  #withdraw(m: Message): void {
    if (m.state === "ready") {
      m.state = "done"
      this.#ready.discard()
    } else if (m.state === "delayed") this.#delayed.delete(m)
  }

  // ------------------------------------------------------------------------------------------
  // the window and the backlog

  /** A message enters the window. */
  #hold(m: Message): void {
    m.held = true
    this.#held++
    this.#windowBytes += m.payload.length
    if (m.waiter !== undefined) this.#waited.set(m.id, m)
  }

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
    this.#leave(m)
    this.#settled()
  }

  #leave(m: Message): void {
    m.state = "done"
    if (!m.held) return
    m.held = false
    this.#held--
    this.#windowBytes -= m.payload.length
    if (this.#waited.size > 0) this.#waited.delete(m.id)
  }

  #settled(): void {
    this.#pager.poke()
    this.#adm.admit()
    this.#checkDrained()
  }

  #load(e: JournalEntry, now: number): void {
    const restored = this.#restore?.(e)
    const m = fromEntry(
      restored ? { ...e, payload: restored.payload } : e,
      this.#journal.persistent,
    )
    m.waiter = restored?.waiter
    this.#hold(m)
    if (e.notBefore !== undefined && e.notBefore > now) {
      ownPayload(m)
      this.#delayed.add(m, e.notBefore)
    } else this.#makeReady(m)
  }

  /** Adds entries that were replayed from the dead letters in the journal back to the window. */
  requeueReplayed(entries: readonly JournalEntry[]): void {
    const list: Message[] = []
    const { count, after } = this.#adm
    for (const e of entries) {
      // The journal moved each of these from its dead letters once: none is in the window yet.
      const m = fromEntry({ ...e, attempts: 0 }, this.#journal.persistent)
      this.#hold(m)
      if (count > 0 && (after === undefined || e.id > after)) this.#replayed.add(e.id)
      list.push(m)
    }
    this.#n.dead = Math.max(0, this.#n.dead - list.length)
    if (list.length > 0) this.#drain.busy()
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
    if (this.#closed) return
    this.#workers.deal(this.#ready.size, this.#s.maxBatch)
    this.#sessions.dispatch(this.#ready)
  }

  // ------------------------------------------------------------------------------------------
  // receiving

  #onSendError(err: unknown, frames: Buffer[]): void {
    if (this.#closed) return
    const id = frames[0]
    const w = id ? this.#workers.get(id.toString("hex")) : undefined
    const code = errorCode(err) ?? errorMessage(err)
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
    return this.#drain.wait(signal, this.#closed ? closedError(this.#name) : undefined)
  }

  #isDrained(): boolean {
    return this.#held === 0 && this.#adm.count === 0 && this.#adm.spilling === 0 && this.#lanes.idle
  }

  #checkDrained(): void {
    this.#drain.check()
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
      inWindow: this.#held,
      inWindowBytes: this.#windowBytes,
      waiting: adm.waiting,
      workers: this.#workers.size,
    })
  }

  /** The stats as metrics for the Prometheus text format (`prefix` e.g. "pirate_sender"). */
  metrics(prefix: string): Metric[] {
    return statsMetrics(prefix, this.stats())
  }

  /** Workers by id with what they hold. */
  workers(): WorkerInfo[] {
    return this.#workers.list()
  }

  /** Sizes of every internal map and queue: all 0 when nothing is pending and nobody waits. */
  [internals](): Record<string, number> {
    return {
      messages: this.#held,
      waited: this.#waited.size,
      replayed: this.#replayed.size,
      windowBytes: this.#windowBytes,
      ready: this.#ready.held,
      delayed: this.#delayed.size,
      drainedWaiters: this.#drain.size,
      backlog: this.#adm.count,
      ...this.#adm.sizes(),
      kept: this.#intake.kept,
      keptBytes: this.#intake.keptBytes,
      ...this.#lanes.sizes(),
    }
  }
}
