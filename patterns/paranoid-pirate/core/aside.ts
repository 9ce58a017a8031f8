/**
 * Named queues nobody takes, with a persistent journal: their messages wait on disk, "set aside",
 * so that they never hold the window against the queues that are served. A send to such a queue
 * is written as backlog; the pager sets aside the messages of such queues as it passes them
 * (`place()`), and reads them back for their queue alone once a worker takes it (its catch-up,
 * see `BacklogPager`); the waiting messages of a queue whose last worker left leave the window
 * (`evict()`). While only the default queue is known none of this applies: a sender that never
 * names a queue works as it always did.
 */
import { debug } from "../../../lib/debug.js"
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import { previousId } from "../../../lib/journal/ids.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"
import type { Message, Schedule } from "./message.js"
import type { Queues, QueueState } from "./queues.js"

/** What the set-aside rules need of the core. */
export interface AsideHost {
  readonly name: string
  readonly journal: Journal
  readonly admission: Admission
  readonly queues: Queues
  readonly window: number
  /** Ids the pager and the catch-ups skip (see `Dispatcher`'s replayed set). */
  readonly replayed: Set<string>
  /** Messages in the window. */
  inWindow(): number
  /** The greatest id given to a message that went into the window, not to disk. */
  lastWindowId(): string | undefined
  /** Spilled sends kept in memory (the head of the backlog). */
  kept(): number
  /** Visits every message in the window that waits: ready, delayed, parked. */
  forEachWaiting(visit: (m: Message) => void): void
  /** Visits every message in flight. */
  forEachInFlight(visit: (m: Message) => void): void
  /** Takes a waiting message out of the window; the journal keeps it as it is. */
  remove(m: Message): void
  /** A cancelled message leaves the journal, and its send id is forgotten. */
  forget(id: string, durable: boolean, dedupeId: string | undefined): void
  /** Messages left the window or the backlog: page in, let producers in, check for drained. */
  settled(): void
  /** A worker came: page in now if there is room. */
  wake(): void
  /** A page of the backlog is being read: what is set aside must not change under it. */
  paging(): boolean
  closed(): boolean
}

export class QueueAside {
  readonly #h: AsideHost
  /**
   * The greatest id at open when a backlog was found: what lies up to it was not counted in its
   * queue's `backlog` (see `backlogLeft()`).
   */
  foundUntil: string | undefined
  /** Queues whose waiting messages are to leave the window (see `evict()`). */
  readonly #toEvict = new Set<QueueState>()
  #evictScheduled = false

  constructor(host: AsideHost) {
    this.#h = host
  }

  /** True when a send for the schedule's queue waits on disk even with room in the window. */
  unserved(schedule: Schedule | undefined): boolean {
    const queues = this.#h.queues
    const name = schedule?.queue ?? DEFAULT_QUEUE
    if (name === DEFAULT_QUEUE) return queues.named && queues.default.unserved
    return queues.find(name)?.unserved ?? true
  }

  /** Where the pager puts an entry of the backlog (see `PagerHost.place`). */
  place(e: JournalEntry, served: boolean): "load" | "aside" | "stop" {
    const queues = this.#h.queues
    const q = queues.state(e.queue ?? DEFAULT_QUEUE)
    if (!queues.named) return "load"
    if (q.asideFrom !== undefined) return "aside"
    if (q.takers > 0) return "load"
    return served ? "aside" : "stop"
  }

  /** The pager passed an entry it set aside. */
  passed(e: JournalEntry): void {
    this.#setAside(this.#h.queues.state(e.queue ?? DEFAULT_QUEUE), e.id, e.payload.length)
  }

  /** The queues with messages set aside that a connected worker takes now. */
  catchUps(): QueueState[] {
    return [...this.#h.queues.values()].filter((q) => q.aside > 0 && q.takers > 0)
  }

  /**
   * Messages of these queues entered the window without room being asked for (replayed dead
   * letters): those of a queue nobody takes are set aside again, so that they do not hold the
   * window against the queues that are served.
   */
  arrived(queues: Iterable<QueueState>): void {
    const unserved = [...queues].filter((q) => q.takers === 0)
    if (unserved.length > 0 && this.#h.queues.named) this.changed(unserved, false)
  }

  /** Workers came or went: set aside what waits for nobody, read back what waits for them. */
  changed(lost: QueueState[], attached: boolean): void {
    for (const q of lost) this.#toEvict.add(q)
    // A worker came: what waits for queues nobody takes may hold the window against it.
    const queues = this.#h.queues
    if (attached && queues.named && this.#h.inWindow() >= this.#h.window / 2)
      for (const q of queues.values()) if (q.takers === 0) this.#toEvict.add(q)
    // After the event that changed them is handled: a lost worker's messages are back in the
    // window by then.
    if (this.#toEvict.size > 0 && !this.#evictScheduled) {
      this.#evictScheduled = true
      setImmediate(() => {
        this.#evictScheduled = false
        this.retry()
      })
    }
    if (attached) this.#h.wake()
  }

  /** Evicts what is due to be (see `changed()`); messages left the window since the last try. */
  retry(): void {
    if (this.#toEvict.size === 0) return
    const queues = [...this.#toEvict]
    this.#toEvict.clear()
    this.#evict(queues)
  }

  /**
   * Named queues that lost their last worker: their messages that wait in the window (ready,
   * delayed, parked) leave it and are set aside on disk. Not while one of them is in flight or
   * being journaled: it is tried again when the next worker comes or goes.
   */
  #evict(queues: QueueState[]): void {
    const h = this.#h
    if (!h.journal.persistent || !h.queues.named || h.closed()) return
    if (h.paging()) {
      // Tried again once the page is read (the pager's catch-up reads these counts and ranges).
      for (const q of queues) this.#toEvict.add(q)
      return
    }
    const adm = h.admission
    // Every message to set aside must lie behind the paging cursor, so that the main pass never
    // reads it again: with nothing ahead of the cursor, the cursor moves to the newest message.
    if (adm.count - adm.aside === 0 && adm.spilling === 0 && h.kept() === 0) {
      // The newest message in the window: a replayed dead letter or a promoted scheduled one
      // may be newer than the last send that went to the window.
      let last = h.lastWindowId()
      h.forEachWaiting((m) => {
        if (m.durable && (last === undefined || m.id > last)) last = m.id
      })
      if (last !== undefined && (adm.after === undefined || last > adm.after)) adm.after = last
      if (adm.after !== undefined && (adm.until === undefined || adm.after > adm.until))
        adm.until = adm.after
    }
    const after = adm.after
    if (after === undefined) return
    let evicted = false
    for (const q of queues) {
      if (q.takers > 0 || q.held === 0) continue
      const out: Message[] = []
      let others = 0
      h.forEachWaiting((m) => {
        if (m.queue !== q.name) return
        if (m.durable && m.waiter === undefined && m.id <= after) out.push(m)
        else others++
      })
      let inFlight = 0
      h.forEachInFlight((m) => {
        if (m.queue === q.name) inFlight++
      })
      if (out.length === 0) continue
      // Some are being journaled or in flight: tried again when messages next leave the window.
      if (out.length + others + inFlight !== q.held) {
        this.#toEvict.add(q)
        continue
      }
      for (const m of out) {
        // A replayed dead letter within what was set aside: its catch-up must read it again now.
        h.replayed.delete(m.id)
        h.remove(m)
        adm.count++
        adm.bytes += m.payload.length
        if (this.foundUntil === undefined || m.id > this.foundUntil) q.backlog++
        this.#setAside(q, m.id, m.payload.length)
      }
      evicted = true
      debug("%s: %d messages of queue %s set aside: no worker takes it", h.name, out.length, q.name)
    }
    if (evicted) h.settled()
  }

  /** Sizes of the internal structures (tests of bounded memory). */
  get pendingEvictions(): number {
    return this.#toEvict.size
  }

  /**
   * A message due later fell due (the scheduler moved it to pending) for a queue nobody takes:
   * true when it stays on disk, set aside or as backlog the pager sets aside, rather than going
   * into the window. False when no backlog waits and its id lies ahead of the cursor: it goes into
   * the window, and is set aside from there (see `arrived()` and `#evict`'s rule).
   */
  due(e: JournalEntry): boolean {
    const h = this.#h
    const q = h.queues.state(e.queue ?? DEFAULT_QUEUE)
    if (!h.journal.persistent || !h.queues.named || !q.unserved) return false
    const adm = h.admission
    const after = adm.after
    const behind = after !== undefined && e.id <= after
    // Ahead of the cursor while a backlog waits: it joins that backlog, which the pager reads up
    // to `until` and where it sets it aside. Between the cursor and it lie only backlog and
    // messages the pager skips (promoted or replayed into the window meanwhile): a send goes to
    // the window only while no backlog waits, and a new backlog starts past every such send.
    const ahead = !behind && adm.backlogActive
    if (!behind && !ahead) return false
    adm.count++
    adm.bytes += e.payload.length
    if (ahead && (adm.until === undefined || e.id > adm.until)) adm.until = e.id
    if (this.foundUntil === undefined || e.id > this.foundUntil) q.backlog++
    if (behind) this.#setAside(q, e.id, e.payload.length)
    return true
  }

  /** Cancels a message set aside; false when `id` is not one. */
  async cancel(id: string): Promise<boolean> {
    const h = this.#h
    const before = previousId(id)
    const range = { ...(before === undefined ? {} : { after: before }), until: id, limit: 1 }
    const found = (await h.journal.pending(range))[0]
    if (found?.id !== id) return false
    const q = h.queues.find(found.queue ?? DEFAULT_QUEUE)
    if (q?.asideFrom === undefined || q.asideTo === undefined) return false
    if (id <= q.asideFrom || id > q.asideTo || h.replayed.has(id)) return false
    const adm = h.admission
    h.replayed.add(id) // its catch-up skips it
    q.aside--
    q.asideBytes -= found.payload.length
    adm.aside--
    adm.asideBytes -= found.payload.length
    adm.count--
    adm.bytes -= found.payload.length
    this.backlogLeft(found)
    h.forget(id, true, found.dedupeId)
    h.settled()
    return true
  }

  /**
   * True for a replayed dead letter whose id lies within what is set aside for its queue: the
   * catch-up must skip it (it is in the window already).
   */
  within(id: string, queue: string): boolean {
    const q = this.#h.queues.find(queue)
    if (q?.asideFrom === undefined || q.asideTo === undefined) return false
    return id > q.asideFrom && id <= q.asideTo
  }

  /** A message of the backlog left the disk (paged in, cancelled): its queue counts one less. */
  backlogLeft(e: JournalEntry): void {
    if (this.foundUntil !== undefined && e.id <= this.foundUntil) return
    const q = this.#h.queues.state(e.queue ?? DEFAULT_QUEUE)
    if (q.backlog > 0) q.backlog--
  }

  /**
   * Counts a message on disk, not in the window, as set aside for queue `q` (the pager passed it,
   * or it left the window, while nobody took `q`): read back once somebody does.
   */
  #setAside(q: QueueState, id: string, bytes: number): void {
    const adm = this.#h.admission
    q.aside++
    q.asideBytes += bytes
    adm.aside++
    adm.asideBytes += bytes
    const before = previousId(id) ?? ""
    if (q.asideFrom === undefined || before < q.asideFrom) q.asideFrom = before
    if (q.asideTo === undefined || id > q.asideTo) q.asideTo = id
  }
}
