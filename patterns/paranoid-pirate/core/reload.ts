/**
 * Messages that come into the window from the journal rather than from a send: a page of the
 * backlog (`load()`), a scheduled send that fell due (`due()`), the entries a pair's hand-over wrote
 * (`adopt()`), and dead letters replayed into the queue again (`requeue()`). Those whose ids lie
 * ahead of the paging cursor, or within what is set aside for their queue, are noted as replayed:
 * the pager and the catch-ups must not read them again.
 */
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"
import type { QueueAside } from "./aside.js"
import type { Counters } from "./counters.js"
import type { DrainWatch } from "./drain-watch.js"
import type { KeyGate } from "./keys.js"
import { expired, fromEntry, type Message, type Waiter } from "./message.js"
import type { Queues, QueueState } from "./queues.js"
import type { Scheduler } from "./scheduler.js"
import type { MessageWindow } from "./window.js"

/**
 * Turns a message read back from the journal (at open, or paged in later) into what goes to the
 * workers and who waits for its reply: a queue journals its requests with their request ids and
 * unwraps them here.
 */
export type RestoreHook = (entry: JournalEntry) => { payload: Buffer; waiter: Waiter | undefined }

/** What reloading needs of the core. */
export interface ReloadHost {
  readonly journal: Journal
  readonly restore: RestoreHook | undefined
  readonly admission: Admission
  readonly aside: QueueAside
  /** Ids the pager and the catch-ups skip (see `Dispatcher`'s replayed set). */
  readonly replayed: Set<string>
  readonly queues: Queues
  readonly keys: KeyGate
  readonly counters: Counters
  readonly scheduler: Scheduler | undefined
  readonly drain: DrainWatch
  readonly window: MessageWindow
  /** A message whose time to live ran out before it was handed out. */
  expire(m: Message): void
}

export class Reload {
  readonly #h: ReloadHost

  constructor(host: ReloadHost) {
    this.#h = host
  }

  /** An entry read from the journal joins the window (or expires at once). */
  load(e: JournalEntry, now: number): void {
    const h = this.#h
    const restored = h.restore?.(e)
    const m = fromEntry(restored ? { ...e, payload: restored.payload } : e, h.journal.persistent)
    m.waiter = restored?.waiter
    h.window.hold(m)
    if (expired(m, now)) h.expire(m)
    else h.window.arrive(m, e.notBefore)
  }

  /** A scheduled send fell due (see `Scheduler`). */
  due(e: JournalEntry, now: number): void {
    const h = this.#h
    // Due for a queue nobody takes: it stays on disk (see QueueAside.due()).
    if (h.aside.due(e)) return
    // Promoted: pending in the journal now, under an id the pager may not have passed yet.
    const { count, after } = h.admission
    if (count > 0 && (after === undefined || e.id > after)) h.replayed.add(e.id)
    this.load(e, now)
    // Due for a queue nobody takes: set aside, not held in the window.
    h.aside.arrived([h.queues.state(e.queue ?? DEFAULT_QUEUE)])
  }

  /**
   * Entries another node wrote into this core's journal (a pair's hand-over, see
   * `PairReplication`): the pending ones join the window (the caller waited for `room()`), the
   * scheduled ones the scheduler.
   */
  adopt(pending: readonly JournalEntry[], scheduled: readonly JournalEntry[]): void {
    const h = this.#h
    const now = Date.now()
    const { count, after } = h.admission
    const states = new Set<QueueState>()
    for (const e of pending) {
      const queue = e.queue ?? DEFAULT_QUEUE
      // Ahead of the paging cursor, or within what is set aside: the pager must not read it again.
      if (count > 0 && (after === undefined || e.id > after)) h.replayed.add(e.id)
      else if (h.aside.within(e.id, queue)) h.replayed.add(e.id)
      this.load(e, now)
      states.add(h.queues.state(queue))
    }
    for (const e of scheduled) h.scheduler?.adopted(e)
    if (pending.length + scheduled.length > 0) h.drain.busy()
    h.aside.arrived(states)
  }

  /** Adds entries that were replayed from the dead letters in the journal back to the window. */
  requeue(entries: readonly JournalEntry[]): void {
    const h = this.#h
    const list: Message[] = []
    const { count, after } = h.admission
    for (const e of entries) {
      // The journal moved each of these from its dead letters once: none is in the window yet.
      // A replayed message has its time to live again: it would expire at once otherwise.
      const m = fromEntry({ ...e, attempts: 0 }, h.journal.persistent)
      m.expiresAt = undefined
      h.window.hold(m)
      if (count > 0 && (after === undefined || e.id > after)) h.replayed.add(e.id)
      // Within what is set aside for its queue: its catch-up must not read it again.
      else if (h.aside.within(e.id, m.queue)) h.replayed.add(e.id)
      if (m.key !== undefined) {
        // A dead letter that held its key goes first; else it queues behind its key.
        const held = h.keys.isHeld(m.key)
        h.keys.enter(m, held)
        if (held) h.keys.release(m.key)
      }
      list.push(m)
    }
    h.counters.dead = Math.max(0, h.counters.dead - list.length)
    if (list.length > 0) h.drain.busy()
    h.window.makeReadyFront(list)
    h.aside.arrived(new Set(list.map((m) => h.queues.state(m.queue))))
  }
}
