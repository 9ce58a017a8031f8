/**
 * The queue core shared by `Sender` and `ParanoidPirateQueue`: a ROUTER that workers connect to,
 * the in-memory window of messages over a `Journal` (with the backlog on disk beyond it),
 * credit-based dispatch, acks, heartbeats, redelivery of a lost worker's messages, retries with
 * backoff and dead letters. The parts live beside it: admission (who gets in, who waits), the
 * ready and delay queues, worker sessions, the journal lanes, the counters, the inbound reader,
 * the window's bookkeeping (window.ts), open and close (lifecycle.ts), what comes back from the
 * journal (reload.ts); this class wires them together and keeps the public methods.
 */
import { EventEmitter } from "node:events"
import { bodyLength } from "../../../lib/body.js"
import { PirateError, closedError, tooLargeError } from "../../../lib/errors.js"
import { storedHeadersSize } from "../../../lib/headers.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Metric } from "../../../lib/metrics.js"
import { Admission } from "./admission.js"
import { Counters, statsMetrics, type DispatcherStats } from "./counters.js"
import { Intake, KEEP_WINDOWS } from "./intake.js"
import { ExpirySweep } from "./expiry.js"
import { KeyGate } from "./keys.js"
import { JournalLanes } from "./lanes.js"
import { fromEntry, type Schedule, type Waiter } from "./message.js"
import { DelayQueue } from "./ready.js"
import { Queues, type NamedQueueStats } from "./queues.js"
import { Producer } from "./producer.js"
import { QueueAside } from "./aside.js"
import { cancelMessage, forget, type CancelHost } from "./cancel.js"
import { BacklogPager } from "./pager.js"
import { Scheduler, scheduledStore } from "./scheduler.js"
import { SendIds } from "./send-ids.js"
import { DrainWatch } from "./drain-watch.js"
import { Sessions, type PairHooks } from "./sessions.js"
import type { PairStateName } from "../../../lib/pair/pair-state.js"
import type { DispatcherEvents, DispatcherSettings } from "./types.js"
import { WorkerRegistry, type WorkerInfo } from "./workers.js"
import { MessageWindow } from "./window.js"
import { CoreLifecycle } from "./lifecycle.js"
import { Reload, type RestoreHook } from "./reload.js"

/** Reads the sizes of a core's internal structures (tests of bounded memory). */
export const internals = Symbol("zeromq-pirate.internals")

export type { RestoreHook }

export class Dispatcher extends EventEmitter<DispatcherEvents> {
  readonly #s: DispatcherSettings
  readonly #journal: Journal
  readonly #name: string
  /**
   * Replayed dead letters whose ids lie ahead of the paging cursor: they went to the window at
   * once, so the pager skips them when it reads that far, also once they are acked (their
   * removal may not be written yet). Forgotten as the cursor passes them, or when nothing is
   * left to page.
   */
  readonly #replayed = new Set<string>()
  /** The ready messages, by queue. */
  readonly #ready = new Queues()
  readonly #delayed = new DelayQueue((due) => this.#window.due(due))
  readonly #keys = new KeyGate()
  readonly #sendIds: SendIds
  /** Sends due later, in the journal's scheduled store (a persistent journal that has one). */
  readonly #scheduler: Scheduler | undefined
  readonly #expiry = new ExpirySweep({
    forEachWaiting: (visit) => this.#window.forEachWaiting(visit),
    forEachInFlight: (visit) => this.#workers.forEachInFlight(visit),
    expire: (m) => {
      this.#window.withdraw(m)
      this.#sessions.expire(m)
    },
    closed: () => this.#life.closed,
  })
  readonly #window: MessageWindow
  readonly #workers = new WorkerRegistry(this.#ready)
  readonly #adm: Admission
  readonly #lanes: JournalLanes
  readonly #intake: Intake
  readonly #n = new Counters()
  readonly #sessions: Sessions
  readonly #life: CoreLifecycle
  /** Messages that come into the window from the journal (see `Reload`). */
  readonly #reload: Reload
  #dispatchScheduled = false
  /** Where accepted messages go, with their ids (see `Producer`). */
  readonly #producer: Producer
  readonly #pager: BacklogPager
  readonly #aside: QueueAside
  readonly #drain = new DrainWatch(
    () => this.#isDrained(),
    () => this.emit("drained", {}),
  )

  constructor(
    name: string,
    settings: DispatcherSettings,
    journal: Journal,
    restore?: RestoreHook,
    pair?: PairHooks,
  ) {
    super()
    this.#name = name
    this.#s = settings
    this.#journal = journal
    this.#window = new MessageWindow({
      queues: this.#ready,
      delayed: this.#delayed,
      keys: this.#keys,
      expiry: this.#expiry,
      size: settings.window,
      scheduleDispatch: () => this.#scheduleDispatch(),
      settled: () => this.#settled(),
      closed: () => this.#life.closed,
    })
    this.#adm = new Admission(
      { ...settings, persistent: journal.persistent },
      {
        inWindow: () => this.#window.held,
        inWindowBytes: () => this.#window.bytes,
        accept: (frame, schedule) => this.#producer.accept(frame, schedule),
        spill: (frame, schedule) => this.#producer.spill(frame, schedule),
        canSchedule: () => this.#scheduler !== undefined,
        later: (frame, schedule) => this.#producer.later(frame, schedule),
        unserved: (schedule) => this.#aside.unserved(schedule),
        backpressure: (event) => this.emit("backpressure", event),
      },
    )
    this.#producer = new Producer({
      journal,
      admission: this.#adm,
      counters: this.#n,
      queues: this.#ready,
      intake: () => this.#intake,
      sendIds: () => this.#sendIds,
      scheduler: () => this.#scheduler,
      hold: (m) => this.#window.hold(m),
      arrive: (m, notBefore) => this.#window.arrive(m, notBefore),
      busy: () => this.#drain.busy(),
    })
    this.#intake = new Intake({
      admission: this.#adm,
      durability: settings.durability,
      keep: KEEP_WINDOWS * settings.window,
      replicated: () => settings.replicated?.(),
      windowBytes: settings.windowBytes,
      inWindowBytes: () => this.#window.bytes,
      append: (item) => this.#lanes.append(item),
      lastWindowId: () => this.#producer.lastWindowId,
      hold: (m) => this.#window.hold(m),
      makeReady: (m) => this.#window.arrive(m, m.notBefore),
      finish: (m) => this.#window.finish(m),
      scheduledWritten: (entry, ok) => {
        this.#adm.scheduling--
        this.#adm.schedulingBytes -= entry.payload.length
        this.#scheduler?.written(entry, ok)
      },
      sendIdWritten: (dedupeId, ok) => this.#sendIds.written(dedupeId, ok),
      holdScheduled: (entry) => {
        const m = fromEntry(entry, false)
        m.t0 = performance.now()
        this.#window.hold(m)
        this.#window.arrive(m, entry.notBefore)
      },
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
      inWindow: () => this.#window.held,
      inWindowBytes: () => this.#window.bytes,
      skip: (id) => this.#replayed.delete(id),
      kept: () => this.#intake.kept,
      keptPage: (limit) => this.#intake.keptPage(limit),
      dropKept: (lastId) => this.#intake.dropKept(lastId),
      load: (e, now) => {
        this.#aside.backlogLeft(e)
        this.#reload.load(e, now)
      },
      place: (e, served) => this.#aside.place(e, served),
      setAside: (e) => this.#aside.passed(e),
      catchUps: () => this.#aside.catchUps(),
      served: () => this.#ready.served,
      closed: () => this.#life.closed,
      paged: () => {
        if (this.#adm.count === 0) this.#replayed.clear()
        this.#adm.admit()
        this.#checkDrained()
      },
      stopped: () => this.#aside.retry(),
      error: (err) => this.emit("error", err),
    })
    this.#aside = new QueueAside({
      name,
      journal,
      admission: this.#adm,
      queues: this.#ready,
      window: settings.window,
      replayed: this.#replayed,
      inWindow: () => this.#window.held,
      lastWindowId: () => this.#producer.lastWindowId,
      kept: () => this.#intake.kept,
      forEachWaiting: (visit) => this.#window.forEachWaiting(visit),
      forEachInFlight: (visit) => this.#workers.forEachInFlight(visit),
      remove: (m) => {
        this.#window.withdraw(m)
        this.#window.leave(m)
      },
      forget: (id, durable, dedupeId) =>
        forget({ lanes: this.#lanes, sendIds: this.#sendIds }, id, durable, dedupeId),
      settled: () => this.#settled(),
      wake: () => this.#pager.wake(),
      paging: () => this.#pager.running !== undefined,
      closed: () => this.#life.closed,
    })
    this.#ready.onChange = (lost, attached) => this.#aside.changed(lost, attached)
    this.#sendIds = new SendIds(journal, settings.dedupeWindow, (err) => this.emit("error", err))
    const store = scheduledStore(journal)
    this.#scheduler =
      store &&
      new Scheduler(store, {
        room: () => this.#adm.pageRoom(),
        roomBytes: () => this.#adm.pageBytes(),
        load: (e, now) => this.#reload.due(e, now),
        sync: settings.durability === "fsync",
        closed: () => this.#life.closed,
        paged: () => this.#checkDrained(),
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
      keys: this.#keys,
      queues: this.#ready,
      sendIdAcked: (dedupeId) => this.#sendIds.ackedInMemory(dedupeId),
      senderId: () => this.#life.senderId,
      write: (frames) => this.#life.write(frames),
      makeReadyFront: (list) => this.#window.makeReadyFront(list),
      withdraw: (m) => this.#window.withdraw(m),
      finish: (m) => this.#window.finish(m),
      leave: (m) => this.#window.leave(m),
      settled: () => this.#settled(),
      scheduleDispatch: () => this.#scheduleDispatch(),
      pair,
      emit,
    })
    this.#reload = new Reload({
      journal,
      restore,
      admission: this.#adm,
      aside: this.#aside,
      replayed: this.#replayed,
      queues: this.#ready,
      keys: this.#keys,
      counters: this.#n,
      scheduler: this.#scheduler,
      drain: this.#drain,
      window: this.#window,
      expire: (m) => this.#sessions.expire(m),
    })
    this.#life = new CoreLifecycle({
      name,
      settings,
      journal,
      counters: this.#n,
      admission: this.#adm,
      producer: this.#producer,
      pager: this.#pager,
      aside: this.#aside,
      scheduler: this.#scheduler,
      sendIds: this.#sendIds,
      keys: this.#keys,
      delayed: this.#delayed,
      expiry: this.#expiry,
      workers: this.#workers,
      sessions: this.#sessions,
      lanes: this.#lanes,
      window: this.#window,
      drain: this.#drain,
      scheduleDispatch: () => this.#scheduleDispatch(),
      error: (err) => this.emit("error", err),
    })
  }

  /** A sender of a pair changed state: tells the workers that know pairs (PAIR). */
  announcePair(state: PairStateName): void {
    this.#sessions.announcePair(state)
  }

  get endpoint(): string | undefined {
    return this.#life.endpoint
  }

  // ------------------------------------------------------------------------------------------
  // lifecycle

  /**
   * Opens the journal and binds `bind`, the endpoint of the option named `option` (for errors).
   * A `passive` core (the passive sender of a pair) reads nothing of the journal, answers workers
   * and hands them nothing until `activate()`.
   */
  async open(bind: string, option = "bind", passive = false): Promise<void> {
    await this.#life.open(bind, option, passive)
  }

  /**
   * A passive core becomes the one that dispatches: it reads the journal as an open does (its
   * messages are paged into the window; ids go on above `floor` too) and hands out work.
   */
  async activate(floor: string | undefined): Promise<void> {
    await this.#life.activate(floor)
  }

  /** True until `activate()` for a core opened passive. */
  get passive(): boolean {
    return this.#life.passive
  }

  /** Closes; waiting calls reject with `reason` (`PIRATE_CLOSED` by default). */
  async close(reason?: PirateError): Promise<void> {
    await this.#life.close(reason)
  }

  // ------------------------------------------------------------------------------------------
  // producing

  /** A durable send: resolves with its id once as durable as configured (see `Admission`). */
  send(frame: Buffer, signal?: AbortSignal, schedule?: Schedule): Promise<string> {
    const tooLarge = this.tooLarge(frame, schedule?.headers)
    if (tooLarge) return Promise.reject(tooLarge)
    const dedupeId = schedule?.dedupeId
    if (dedupeId === undefined) return this.#adm.send(frame, signal, schedule)
    return this.#sendIds.once(
      dedupeId,
      () => this.#adm.send(frame, signal, schedule),
      () => this.#n.deduplicated++,
    )
  }

  /**
   * `PIRATE_TOO_LARGE` for a payload (with its headers, as stored) larger than this side's own
   * `maxMessageSize` allows (its workers' limits match it by default): such a message is refused
   * before it is journaled.
   */
  tooLarge(frame: Buffer, headers?: Readonly<Record<string, string>>): PirateError | undefined {
    const max = this.#s.maxMessageSize
    const length = bodyLength(frame)
    const extra = headers === undefined ? 0 : storedHeadersSize(headers)
    if (length + 4 + extra <= max) return undefined
    return tooLargeError(
      extra === 0
        ? `a payload for this ${this.#name}`
        : `a payload with its headers for this ${this.#name}`,
      length + extra,
      max,
    )
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
    options: {
      durable: boolean
      waiter?: Waiter
      stored?: Buffer
      schedule?: Schedule | undefined
    },
  ): { id: string; accepted: Promise<unknown> } {
    if (this.#life.closed) throw closedError(this.#name)
    this.#adm.useReservation(payload.length)
    return this.#producer.enter(
      payload,
      options.durable,
      options.waiter,
      options.stored,
      options.schedule,
    )
  }

  /** Cancels a message nobody waits for any more (an aborted request). */
  cancelRequest(id: string): void {
    const m = this.#window.waitedFor(id)
    if (!m) return
    m.waiter = undefined
    if (m.state !== "ready" && m.state !== "delayed" && m.state !== "parked") return
    this.#window.withdraw(m)
    this.#window.finish(m)
    if (m.durable) this.#lanes.remove(m.id)
  }

  /**
   * Removes a message that has not been dispatched yet: due later, ready, waiting for its retry or
   * behind its key in the window, or waiting on disk. True when it was removed; false when it is
   * unknown, in flight, or done.
   */
  async cancel(id: string): Promise<boolean> {
    if (this.#life.closed) throw closedError(this.#name)
    return cancelMessage(this.#cancelHost, id)
  }

  /** What `cancelMessage()` needs. */
  get #cancelHost(): CancelHost {
    return {
      journal: this.#journal,
      admission: this.#adm,
      lanes: this.#lanes,
      scheduler: this.#scheduler,
      pager: this.#pager,
      aside: this.#aside,
      sendIds: this.#sendIds,
      replayed: this.#replayed,
      forEachWaiting: (visit) => this.#window.forEachWaiting(visit),
      withdraw: (m) => {
        this.#window.withdraw(m)
        this.#window.finish(m)
      },
      settled: () => this.#settled(),
      checkDrained: () => this.#drain.check(),
    }
  }
  #settled(): void {
    this.#aside.retry()
    this.#scheduler?.poke()
    this.#pager.poke()
    this.#adm.admit()
    this.#window.wakeRoomWaiters()
    this.#checkDrained()
  }

  /**
   * Entries another node wrote into this core's journal (a pair's hand-over, see
   * `PairReplication`): the pending ones join the window (the caller waited for `room()`), the
   * scheduled ones the scheduler.
   */
  adopt(pending: readonly JournalEntry[], scheduled: readonly JournalEntry[]): void {
    if (this.#life.closed || this.#life.passive) return
    this.#reload.adopt(pending, scheduled)
    this.#scheduleDispatch()
  }

  /** Resolves once the window has room for `n` more messages (at once while it is empty). */
  room(n: number): Promise<void> {
    return this.#window.room(n)
  }

  /** Adds entries that were replayed from the dead letters in the journal back to the window. */
  requeueReplayed(entries: readonly JournalEntry[]): void {
    this.#reload.requeue(entries)
  }

  // ------------------------------------------------------------------------------------------
  // dispatch

  #scheduleDispatch(): void {
    if (this.#dispatchScheduled || this.#life.closed) return
    this.#dispatchScheduled = true
    setImmediate(() => {
      this.#dispatchScheduled = false
      this.#dispatch()
    })
  }

  #dispatch(): void {
    if (this.#life.closed || this.#life.passive) return
    const ready = this.#ready
    this.#workers.deal(ready.size, this.#s.maxBatch, (w) => ready.readyFor(w))
    this.#sessions.dispatch(this.#ready)
  }

  // ------------------------------------------------------------------------------------------
  // queries

  /**
   * Resolves when nothing is ready, delayed, in flight, being journaled or on disk; rejects with
   * `PIRATE_CLOSED` when the core closes first with messages pending, `PIRATE_ABORTED` on abort.
   */
  drained(signal?: AbortSignal): Promise<void> {
    return this.#drain.wait(signal, this.#life.closed ? closedError(this.#name) : undefined)
  }

  #isDrained(): boolean {
    return (
      this.#window.held === 0 &&
      this.#adm.count === 0 &&
      this.#adm.spilling === 0 &&
      this.#lanes.idle &&
      (this.#scheduler === undefined || (this.#scheduler.count === 0 && !this.#scheduler.busy))
    )
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
    const byQueue = new Map<string, number>()
    for (const w of this.#workers.values()) {
      inFlight += w.inflight.size
      for (const m of w.inflight.values()) byQueue.set(m.queue, (byQueue.get(m.queue) ?? 0) + 1)
    }
    const queues: Record<string, NamedQueueStats> = {}
    for (const q of this.#ready.values())
      queues[q.name] = this.#ready.stats(q, byQueue.get(q.name) ?? 0)
    const adm = this.#adm
    return this.#n.stats({
      ready: this.#ready.size + this.#keys.parked,
      inFlight,
      delayed: this.#delayed.size - this.#delayed.scheduled,
      scheduled: this.#delayed.scheduled + (this.#scheduler?.count ?? 0),
      backlog: adm.count + adm.spilling,
      backlogBytes: adm.bytes + adm.spillingBytes,
      inWindow: this.#window.held,
      inWindowBytes: this.#window.bytes,
      waiting: adm.waiting,
      workers: this.#workers.size,
      queues,
    })
  }

  /** One named queue's figures (all 0 for a queue this core has not seen). */
  queueStats(name: string): NamedQueueStats {
    let inFlight = 0
    for (const w of this.#workers.values())
      for (const m of w.inflight.values()) if (m.queue === name) inFlight++
    return this.#ready.stats(this.#ready.find(name), inFlight)
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
      messages: this.#window.held,
      waited: this.#window.waited,
      replayed: this.#replayed.size,
      windowBytes: this.#window.bytes,
      ready: this.#ready.held,
      namedQueues: this.#ready.states - 1,
      pendingEvictions: this.#aside.pendingEvictions,
      delayed: this.#delayed.held,
      keys: this.#keys.size,
      parked: this.#keys.parked,
      scheduled: this.#scheduler?.count ?? 0,
      drainedWaiters: this.#drain.size,
      backlog: this.#adm.count,
      ...this.#adm.sizes(),
      kept: this.#intake.kept,
      keptBytes: this.#intake.keptBytes,
      ...this.#lanes.sizes(),
      ...this.#sendIds.sizes(),
    }
  }
}
