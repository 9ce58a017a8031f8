/**
 * The window's bookkeeping: the messages in memory are counted (with their payload bytes), not
 * kept in a map by id; only those somebody waits for are kept by id. A message enters the window
 * (`hold()`), becomes ready for the first time (`arrive()`), waits for its time (`due()`), is
 * taken out of its queue (`withdraw()`) and leaves (`leave()`, `finish()`); callers of `room()`
 * wait until the window has room for theirs (a pair's hand-over).
 */
import type { ExpirySweep } from "./expiry.js"
import type { KeyGate } from "./keys.js"
import { ownPayload, type Message } from "./message.js"
import type { Queues } from "./queues.js"
import type { DelayQueue } from "./ready.js"

/** What the window needs of the core. */
export interface WindowHost {
  /** The ready messages, by queue. */
  readonly queues: Queues
  readonly delayed: DelayQueue
  readonly keys: KeyGate
  readonly expiry: ExpirySweep
  /** The window's size in messages (`window`). */
  readonly size: number
  scheduleDispatch(): void
  /** Messages left the window: page in, let producers in, check for drained. */
  settled(): void
  closed(): boolean
}

export class MessageWindow {
  readonly #h: WindowHost
  /**
   * The messages in memory are counted, not kept in a map by id: a map of thousands of string
   * keys costs a cache miss or more per look-up, three per message. Only those that need finding
   * by id are kept by id: the ones somebody waits for (a `request()`, to cancel or reject at close).
   */
  #held = 0
  /** Payload bytes of the messages held (bounded by `windowBytes`). */
  #bytes = 0
  readonly #waited = new Map<string, Message>()
  /** Callers of `room()` waiting, in order. */
  readonly #roomWaiters: { n: number; resolve: () => void }[] = []

  constructor(host: WindowHost) {
    this.#h = host
  }

  /** Messages in the window. */
  get held(): number {
    return this.#held
  }

  /** Payload bytes of the messages in the window. */
  get bytes(): number {
    return this.#bytes
  }

  /** Messages in the window that somebody waits for. */
  get waited(): number {
    return this.#waited.size
  }

  /** The message `id` when somebody waits for it. */
  waitedFor(id: string): Message | undefined {
    return this.#waited.get(id)
  }

  /** Visits every message in the window that waits: ready, delayed, parked behind its key. */
  forEachWaiting(visit: (m: Message) => void): void {
    this.#h.queues.forEach(visit)
    this.#h.delayed.forEach(visit)
    this.#h.keys.forEachParked(visit)
  }

  /** Takes a ready, delayed or parked message out of its queue. */
  withdraw(m: Message): void {
    if (m.state === "ready") {
      m.state = "done"
      this.#h.queues.discard(m)
    } else if (m.state === "delayed") this.#h.delayed.delete(m)
    else if (m.state === "parked") {
      this.#h.keys.unpark(m)
      m.state = "done"
    }
  }

  /** A message enters the window. */
  hold(m: Message): void {
    m.held = true
    this.#held++
    this.#h.queues.state(m.queue).held++
    this.#bytes += m.payload.length
    if (m.waiter !== undefined) this.#waited.set(m.id, m)
    this.#h.expiry.note(m)
  }

  /**
   * A message in the window becomes ready for the first time (sent, paged in, restored): it joins
   * its key, and waits for `notBefore` when that is later.
   */
  arrive(m: Message, notBefore: number | undefined): void {
    // Armed at hold() too; a sweep that ran while this one was being journaled did not see it.
    this.#h.expiry.note(m)
    if (notBefore !== undefined && notBefore > Date.now()) {
      // A first attempt that waits joins its key when it falls due (see due()); a retry that
      // waits (restored from the journal) keeps its place at the head of its key.
      if (m.key !== undefined && m.attempt > 0) this.#h.keys.enter(m)
      ownPayload(m)
      this.#h.delayed.add(m, notBefore)
      return
    }
    if (m.key !== undefined) this.#h.keys.enter(m)
    this.#makeReady(m)
  }

  /** Messages whose time came: retries, and first attempts sent with a delay (they join their key now). */
  due(list: Message[]): void {
    for (const m of list) if (m.attempt === 0 && m.key !== undefined) this.#h.keys.enter(m)
    this.makeReadyFront(list)
  }

  #makeReady(m: Message): void {
    this.#h.queues.push(m)
    this.#h.scheduleDispatch()
  }

  makeReadyFront(list: Message[]): void {
    if (list.length === 0) return
    this.#h.queues.pushFront(list)
    this.#h.scheduleDispatch()
  }

  /** A message left the window (acked, dead, cancelled): page in backlog, let producers in. */
  finish(m: Message): void {
    this.leave(m)
    this.#h.settled()
  }

  leave(m: Message): void {
    m.state = "done"
    if (m.key !== undefined) {
      const next = this.#h.keys.leave(m)
      if (next) this.makeReadyFront([next])
    }
    if (!m.held) return
    m.held = false
    this.#held--
    this.#h.queues.state(m.queue).held--
    this.#bytes -= m.payload.length
    if (this.#waited.size > 0) this.#waited.delete(m.id)
  }

  /** Resolves once the window has room for `n` more messages (at once while it is empty). */
  room(n: number): Promise<void> {
    if (this.#h.closed() || this.#held === 0 || this.#held + n <= this.#h.size)
      return Promise.resolve()
    return new Promise((resolve) => this.#roomWaiters.push({ n, resolve }))
  }

  wakeRoomWaiters(): void {
    const waiters = this.#roomWaiters
    for (let w = waiters[0]; w !== undefined; w = waiters[0]) {
      if (!this.#h.closed() && this.#held > 0 && this.#held + w.n > this.#h.size) return
      waiters.shift()
      w.resolve()
    }
  }

  /** At close: whoever waits for a message's reply is rejected with `reason`. */
  rejectWaiters(reason: Error): void {
    for (const m of this.#waited.values()) {
      m.waiter?.reject(reason)
      m.waiter = undefined
    }
    this.#waited.clear()
  }
}
