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
import { DEFAULT_QUEUE, storedHeadersSize } from "../../../lib/headers.js"
import { journalSenderId } from "../../../lib/journal/sender-id.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Metric } from "../../../lib/metrics.js"
import { FRAME_GOODBYE } from "../../../lib/protocol.js"
import { applyCurveServer, watchRefusals } from "../../../lib/security.js"
import { SocketWriter, bindRetrying } from "../../../lib/writer.js"
import { Admission } from "./admission.js"
import { Counters, statsMetrics, type DispatcherStats } from "./counters.js"
import { receiveLoop } from "./inbound.js"
import { Intake, KEEP_WINDOWS } from "./intake.js"
import { ExpirySweep } from "./expiry.js"
import { KeyGate, holdDeadLetterKeys } from "./keys.js"
import { JournalLanes } from "./lanes.js"
import {
  expired,
  fromEntry,
  ownPayload,
  type Message,
  type Schedule,
  type Waiter,
} from "./message.js"
import { DelayQueue } from "./ready.js"
import { Queues, type NamedQueueStats, type QueueState } from "./queues.js"
import { Producer } from "./producer.js"
import { QueueAside } from "./aside.js"
import { cancelMessage, forget, type CancelHost } from "./cancel.js"
import { BacklogPager } from "./pager.js"
import { Scheduler, scheduledStore } from "./scheduler.js"
import { SendIds } from "./send-ids.js"
import { DrainWatch } from "./drain-watch.js"
import { workerRouter } from "./router.js"
import { Sessions, type PairHooks } from "./sessions.js"
import type { PairStateName } from "../../../lib/pair/pair-state.js"
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
  #endpoint: string | undefined
  /** Announced in WELCOME: workers key their dedupe records on it. */
  #senderId: string | undefined
  #closed = false
  /** Opened passive (a pair's passive sender): dispatches nothing until `activate()`. */
  #passive = false
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
  /** Callers of `room()` waiting, in order. */
  readonly #roomWaiters: { n: number; resolve: () => void }[] = []
  /**
   * Replayed dead letters whose ids lie ahead of the paging cursor: they went to the window at
   * once, so the pager skips them when it reads that far, also once they are acked (their
   * removal may not be written yet). Forgotten as the cursor passes them, or when nothing is
   * left to page.
   */
  readonly #replayed = new Set<string>()
  /** The ready messages, by queue. */
  readonly #ready = new Queues()
  readonly #delayed = new DelayQueue((due) => this.#due(due))
  readonly #keys = new KeyGate()
  readonly #sendIds: SendIds
  /** Sends due later, in the journal's scheduled store (a persistent journal that has one). */
  readonly #scheduler: Scheduler | undefined
  readonly #expiry = new ExpirySweep({
    forEachWaiting: (visit) => this.#forEachWaiting(visit),
    forEachInFlight: (visit) => {
      for (const w of this.#workers.values()) for (const m of w.inflight.values()) visit(m)
    },
    expire: (m) => {
      this.#withdraw(m)
      this.#sessions.expire(m)
    },
    closed: () => this.#closed,
  })
  readonly #workers = new WorkerRegistry(this.#ready)
  readonly #adm: Admission
  readonly #lanes: JournalLanes
  readonly #intake: Intake
  readonly #n = new Counters()
  readonly #sessions: Sessions
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
    this.#restore = restore
    this.#s = settings
    this.#journal = journal
    this.#adm = new Admission(
      { ...settings, persistent: journal.persistent },
      {
        inWindow: () => this.#held,
        inWindowBytes: () => this.#windowBytes,
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
      hold: (m) => this.#hold(m),
      arrive: (m, notBefore) => this.#arrive(m, notBefore),
      busy: () => this.#drain.busy(),
    })
    this.#intake = new Intake({
      admission: this.#adm,
      durability: settings.durability,
      keep: KEEP_WINDOWS * settings.window,
      replicated: () => settings.replicated?.(),
      windowBytes: settings.windowBytes,
      inWindowBytes: () => this.#windowBytes,
      append: (item) => this.#lanes.append(item),
      lastWindowId: () => this.#producer.lastWindowId,
      hold: (m) => this.#hold(m),
      makeReady: (m) => this.#arrive(m, m.notBefore),
      finish: (m) => this.#finish(m),
      scheduledWritten: (entry, ok) => {
        this.#adm.scheduling--
        this.#adm.schedulingBytes -= entry.payload.length
        this.#scheduler?.written(entry, ok)
      },
      sendIdWritten: (dedupeId, ok) => this.#sendIds.written(dedupeId, ok),
      holdScheduled: (entry) => {
        const m = fromEntry(entry, false)
        m.t0 = performance.now()
        this.#hold(m)
        this.#arrive(m, entry.notBefore)
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
      inWindow: () => this.#held,
      inWindowBytes: () => this.#windowBytes,
      skip: (id) => this.#replayed.delete(id),
      kept: () => this.#intake.kept,
      keptPage: (limit) => this.#intake.keptPage(limit),
      dropKept: (lastId) => this.#intake.dropKept(lastId),
      load: (e, now) => {
        this.#aside.backlogLeft(e)
        this.#load(e, now)
      },
      place: (e, served) => this.#aside.place(e, served),
      setAside: (e) => this.#aside.passed(e),
      catchUps: () => this.#aside.catchUps(),
      served: () => this.#ready.served,
      closed: () => this.#closed,
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
      inWindow: () => this.#held,
      lastWindowId: () => this.#producer.lastWindowId,
      kept: () => this.#intake.kept,
      forEachWaiting: (visit) => this.#forEachWaiting(visit),
      forEachInFlight: (visit) => {
        for (const w of this.#workers.values()) for (const m of w.inflight.values()) visit(m)
      },
      remove: (m) => {
        this.#withdraw(m)
        this.#leave(m)
      },
      forget: (id, durable, dedupeId) =>
        forget({ lanes: this.#lanes, sendIds: this.#sendIds }, id, durable, dedupeId),
      settled: () => this.#settled(),
      wake: () => this.#pager.wake(),
      paging: () => this.#pager.running !== undefined,
      closed: () => this.#closed,
    })
    this.#ready.onChange = (lost, attached) => this.#aside.changed(lost, attached)
    this.#sendIds = new SendIds(journal, settings.dedupeWindow, (err) => this.emit("error", err))
    const store = scheduledStore(journal)
    this.#scheduler =
      store &&
      new Scheduler(store, {
        room: () => this.#adm.pageRoom(),
        roomBytes: () => this.#adm.pageBytes(),
        load: (e, now) => {
          // Due for a queue nobody takes: it stays on disk (see QueueAside.due()).
          if (this.#aside.due(e)) return
          // Promoted: pending in the journal now, under an id the pager may not have passed yet.
          const { count, after } = this.#adm
          if (count > 0 && (after === undefined || e.id > after)) this.#replayed.add(e.id)
          this.#load(e, now)
          // Due for a queue nobody takes: set aside, not held in the window.
          this.#aside.arrived([this.#ready.state(e.queue ?? DEFAULT_QUEUE)])
        },
        sync: settings.durability === "fsync",
        closed: () => this.#closed,
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
      senderId: () => this.#senderId,
      write: (frames) => this.#writer?.write(frames),
      makeReadyFront: (list) => this.#makeReadyFront(list),
      withdraw: (m) => this.#withdraw(m),
      finish: (m) => this.#finish(m),
      leave: (m) => this.#leave(m),
      settled: () => this.#settled(),
      scheduleDispatch: () => this.#scheduleDispatch(),
      pair,
      emit,
    })
  }

  /** A sender of a pair changed state: tells the workers that know pairs (PAIR). */
  announcePair(state: PairStateName): void {
    this.#sessions.announcePair(state)
  }

  get endpoint(): string | undefined {
    return this.#endpoint
  }

  // ------------------------------------------------------------------------------------------
  // lifecycle

  /**
   * Opens the journal and binds `bind`, the endpoint of the option named `option` (for errors).
   * A `passive` core (the passive sender of a pair) reads nothing of the journal, answers workers
   * and hands them nothing until `activate()`.
   */
  async open(bind: string, option = "bind", passive = false): Promise<void> {
    await this.#journal.open()
    let router: Router | undefined
    try {
      if (passive) {
        this.#passive = true
        this.#senderId = await journalSenderId(this.#journal)
      } else await this.#recover(undefined)
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
      if (!passive) await this.#startJournalWork()
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

  /**
   * A passive core becomes the one that dispatches: it reads the journal as an open does (its
   * messages are paged into the window; ids go on above `floor` too) and hands out work.
   */
  async activate(floor: string | undefined): Promise<void> {
    if (!this.#passive || this.#closed) return
    await this.#recover(floor)
    this.#passive = false
    await this.#startJournalWork()
    this.#scheduleDispatch()
  }

  /** True until `activate()` for a core opened passive. */
  get passive(): boolean {
    return this.#passive
  }

  /** What the journal holds at open: ids go on above it (and `floor`); its messages are paged in. */
  async #recover(floor: string | undefined): Promise<void> {
    const lastId = await this.#journal.lastId()
    this.#producer.startAfter(
      floor !== undefined && (lastId === undefined || floor > lastId) ? floor : lastId,
      this.#s.idParity,
    )
    this.#senderId = await journalSenderId(this.#journal)
    const js = await this.#journal.stats()
    this.#n.dead = js.dead
    if (js.pending > 0) {
      this.#aside.foundUntil = lastId
      this.#pager.found(js.pending, lastId)
      this.#drain.busy()
    }
    if (this.#s.keyOnDead === "hold" && js.dead > 0)
      await holdDeadLetterKeys(this.#journal, this.#keys)
    if (this.#scheduler && (js.scheduled ?? 0) > 0) {
      this.#drain.busy()
      await this.#scheduler.start(js.scheduled ?? 0)
    }
  }

  async #startJournalWork(): Promise<void> {
    this.#sendIds.start()
    await this.#pager.start()
  }

  /** Closes; waiting calls reject with `reason` (`PIRATE_CLOSED` by default). */
  async close(reason?: PirateError): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const errors: unknown[] = []
    this.#sessions.stop()
    this.#pager.stop()
    this.#delayed.stop()
    this.#scheduler?.stop()
    this.#expiry.stop()
    const sweeping = this.#sendIds.stop()
    const closed = reason ?? closedError(this.#name)
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
      () => this.#scheduler?.running,
      () => sweeping,
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
    this.#wakeRoomWaiters()
    this.#drain.close(closed)
    if (errors.length > 0) throw new AggregateError(errors, `${this.#name} close failed`)
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
    if (this.#closed) throw closedError(this.#name)
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
    const m = this.#waited.get(id)
    if (!m) return
    m.waiter = undefined
    if (m.state !== "ready" && m.state !== "delayed" && m.state !== "parked") return
    this.#withdraw(m)
    this.#finish(m)
    if (m.durable) this.#lanes.remove(m.id)
  }

  /**
   * Removes a message that has not been dispatched yet: due later, ready, waiting for its retry or
   * behind its key in the window, or waiting on disk. True when it was removed; false when it is
   * unknown, in flight, or done.
   */
  async cancel(id: string): Promise<boolean> {
    if (this.#closed) throw closedError(this.#name)
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
      forEachWaiting: (visit) => this.#forEachWaiting(visit),
      withdraw: (m) => {
        this.#withdraw(m)
        this.#finish(m)
      },
      settled: () => this.#settled(),
      checkDrained: () => this.#drain.check(),
    }
  }
  /** Visits every message in the window that waits: ready, delayed, parked behind its key. */
  #forEachWaiting(visit: (m: Message) => void): void {
    this.#ready.forEach(visit)
    this.#delayed.forEach(visit)
    this.#keys.forEachParked(visit)
  }

  /** Takes a ready, delayed or parked message out of its queue. */
  #withdraw(m: Message): void {
    if (m.state === "ready") {
      m.state = "done"
      this.#ready.discard(m)
    } else if (m.state === "delayed") this.#delayed.delete(m)
    else if (m.state === "parked") {
      this.#keys.unpark(m)
      m.state = "done"
    }
  }

  // ------------------------------------------------------------------------------------------
  // the window and the backlog

  /** A message enters the window. */
  #hold(m: Message): void {
    m.held = true
    this.#held++
    this.#ready.state(m.queue).held++
    this.#windowBytes += m.payload.length
    if (m.waiter !== undefined) this.#waited.set(m.id, m)
    this.#expiry.note(m)
  }

  /**
   * A message in the window becomes ready for the first time (sent, paged in, restored): it joins
   * its key, and waits for `notBefore` when that is later.
   */
  #arrive(m: Message, notBefore: number | undefined): void {
    // Armed at #hold too; a sweep that ran while this one was being journaled did not see it.
    this.#expiry.note(m)
    if (notBefore !== undefined && notBefore > Date.now()) {
      // A first attempt that waits joins its key when it falls due (see #due); a retry that
      // waits (restored from the journal) keeps its place at the head of its key.
      if (m.key !== undefined && m.attempt > 0) this.#keys.enter(m)
      ownPayload(m)
      this.#delayed.add(m, notBefore)
      return
    }
    if (m.key !== undefined) this.#keys.enter(m)
    this.#makeReady(m)
  }

  /** Messages whose time came: retries, and first attempts sent with a delay (they join their key now). */
  #due(list: Message[]): void {
    for (const m of list) if (m.attempt === 0 && m.key !== undefined) this.#keys.enter(m)
    this.#makeReadyFront(list)
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
    if (m.key !== undefined) {
      const next = this.#keys.leave(m)
      if (next) this.#makeReadyFront([next])
    }
    if (!m.held) return
    m.held = false
    this.#held--
    this.#ready.state(m.queue).held--
    this.#windowBytes -= m.payload.length
    if (this.#waited.size > 0) this.#waited.delete(m.id)
  }

  #settled(): void {
    this.#aside.retry()
    this.#scheduler?.poke()
    this.#pager.poke()
    this.#adm.admit()
    this.#wakeRoomWaiters()
    this.#checkDrained()
  }

  /**
   * Entries another node wrote into this core's journal (a pair's hand-over, see
   * `PairReplication`): the pending ones join the window (the caller waited for `room()`), the
   * scheduled ones the scheduler.
   */
  adopt(pending: readonly JournalEntry[], scheduled: readonly JournalEntry[]): void {
    if (this.#closed || this.#passive) return
    const now = Date.now()
    const { count, after } = this.#adm
    const states = new Set<QueueState>()
    for (const e of pending) {
      const queue = e.queue ?? DEFAULT_QUEUE
      // Ahead of the paging cursor, or within what is set aside: the pager must not read it again.
      if (count > 0 && (after === undefined || e.id > after)) this.#replayed.add(e.id)
      else if (this.#aside.within(e.id, queue)) this.#replayed.add(e.id)
      this.#load(e, now)
      states.add(this.#ready.state(queue))
    }
    for (const e of scheduled) this.#scheduler?.adopted(e)
    if (pending.length + scheduled.length > 0) this.#drain.busy()
    this.#aside.arrived(states)
    this.#scheduleDispatch()
  }

  /** Resolves once the window has room for `n` more messages (at once while it is empty). */
  room(n: number): Promise<void> {
    if (this.#closed || this.#held === 0 || this.#held + n <= this.#s.window)
      return Promise.resolve()
    return new Promise((resolve) => this.#roomWaiters.push({ n, resolve }))
  }

  #wakeRoomWaiters(): void {
    const waiters = this.#roomWaiters
    for (let w = waiters[0]; w !== undefined; w = waiters[0]) {
      if (!this.#closed && this.#held > 0 && this.#held + w.n > this.#s.window) return
      waiters.shift()
      w.resolve()
    }
  }

  #load(e: JournalEntry, now: number): void {
    const restored = this.#restore?.(e)
    const m = fromEntry(
      restored ? { ...e, payload: restored.payload } : e,
      this.#journal.persistent,
    )
    m.waiter = restored?.waiter
    this.#hold(m)
    if (expired(m, now)) this.#sessions.expire(m)
    else this.#arrive(m, e.notBefore)
  }

  /** Adds entries that were replayed from the dead letters in the journal back to the window. */
  requeueReplayed(entries: readonly JournalEntry[]): void {
    const list: Message[] = []
    const { count, after } = this.#adm
    for (const e of entries) {
      // The journal moved each of these from its dead letters once: none is in the window yet.
      // A replayed message has its time to live again: it would expire at once otherwise.
      const m = fromEntry({ ...e, attempts: 0 }, this.#journal.persistent)
      m.expiresAt = undefined
      this.#hold(m)
      if (count > 0 && (after === undefined || e.id > after)) this.#replayed.add(e.id)
      // Within what is set aside for its queue: its catch-up must not read it again.
      else if (this.#aside.within(e.id, m.queue)) this.#replayed.add(e.id)
      if (m.key !== undefined) {
        // A dead letter that held its key goes first; else it queues behind its key.
        const held = this.#keys.isHeld(m.key)
        this.#keys.enter(m, held)
        if (held) this.#keys.release(m.key)
      }
      list.push(m)
    }
    this.#n.dead = Math.max(0, this.#n.dead - list.length)
    if (list.length > 0) this.#drain.busy()
    this.#makeReadyFront(list)
    this.#aside.arrived(new Set(list.map((m) => this.#ready.state(m.queue))))
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
    if (this.#closed || this.#passive) return
    const ready = this.#ready
    this.#workers.deal(ready.size, this.#s.maxBatch, (w) => ready.readyFor(w))
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
    return (
      this.#held === 0 &&
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
      inWindow: this.#held,
      inWindowBytes: this.#windowBytes,
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
      messages: this.#held,
      waited: this.#waited.size,
      replayed: this.#replayed.size,
      windowBytes: this.#windowBytes,
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
