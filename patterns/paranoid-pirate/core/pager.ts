/**
 * Pages the backlog (messages on disk, not in memory) into the window, oldest first: at open
 * (a restarted sender) and whenever the window has half emptied while sends wait on disk. The
 * head of a young backlog is kept in memory as well (see `Intake`) and paged from there. A page
 * stops at the window's limit in messages and in payload bytes, and is read no larger than the
 * bytes free in the window hold at the backlog's mean size (so large payloads are not read by
 * the thousand only to be left there).
 */
import { toError } from "../../../lib/errors.js"
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"
import type { QueueState } from "./queues.js"

export interface PagerHost {
  readonly journal: Journal
  readonly admission: Admission
  readonly window: number
  readonly windowBytes: number
  inWindow(): number
  inWindowBytes(): number
  /**
   * True for an entry the window has had already (a replayed dead letter ahead of the cursor),
   * which is not loaded again; the cursor passes it.
   */
  skip(id: string): boolean
  /** Spilled sends kept in memory: the head of the backlog, paged in without a read. */
  kept(): number
  /** Up to `limit` kept sends that are written, oldest first, left in place. */
  keptPage(limit: number): JournalEntry[]
  /** The kept sends up to `lastId` were paged in. */
  dropKept(lastId: string): void
  /** Puts an entry read from the journal into the window. */
  load(entry: JournalEntry, now: number): void
  /**
   * Where an entry of the backlog goes (named queues): into the window; set aside for its queue
   * (nobody takes it, see `setAside()`); or nowhere yet: nobody takes any queue, so the page
   * stops there and the rest stays on disk until a worker comes.
   */
  place(entry: JournalEntry, served: boolean): "load" | "aside" | "stop"
  /** Counts an entry the pager passed as set aside for its queue. */
  setAside(entry: JournalEntry): void
  /** The queues with messages set aside that a connected worker takes now. */
  catchUps(): QueueState[]
  /** Some connected worker takes some queue. */
  served(): boolean
  closed(): boolean
  /** A page was read (or the pager stopped): producers may get in, the sender may be drained. */
  paged(): void
  /** No page is being read any more (see `running`). */
  stopped(): void
  error(err: Error): void
}

export class BacklogPager {
  readonly #h: PagerHost
  #running: Promise<void> | undefined
  #retry: NodeJS.Timeout | undefined
  #missed = false
  /** A backlog found at open has an estimated size in bytes until its first page is read. */
  #bytesEstimated = false

  constructor(host: PagerHost) {
    this.#h = host
  }

  /** The page being read, if any. */
  get running(): Promise<void> | undefined {
    return this.#running
  }

  /** A backlog of `count` messages up to `lastId` was found at open. */
  found(count: number, lastId: string | undefined): void {
    const adm = this.#h.admission
    adm.count = count
    adm.until = lastId
    this.#bytesEstimated = true
  }

  /** Pages in now (at open), whatever the window holds. */
  start(): Promise<void> {
    return this.#launch()
  }

  /**
   * Pages in when the window has half emptied, in messages and in bytes: by halves of the window,
   * not one per ack.
   */
  poke(): void {
    const h = this.#h
    if (h.admission.count === 0 || h.closed()) return
    if (h.inWindow() <= h.window / 2 && h.inWindowBytes() <= h.windowBytes / 2) void this.#launch()
  }

  /**
   * Pages in now if there is room at all: a worker came (its queues' messages set aside are read
   * back, and a page stopped for want of any worker goes on).
   */
  wake(): void {
    const h = this.#h
    if (h.closed() || h.admission.count === 0) return
    if (h.admission.pageRoom() > 0) void this.#launch()
  }

  #launch(): Promise<void> {
    if (this.#running) {
      this.#missed = true // room freed while a page was read: look again when it is done
      return this.#running
    }
    // Cleared in a callback, which always runs later: #run() may finish without awaiting.
    const run: Promise<void> = this.#run().finally(() => {
      if (this.#running === run) this.#running = undefined
      this.#h.stopped()
      if (this.#missed) {
        this.#missed = false
        this.poke()
      }
    })
    this.#running = run
    return run
  }

  stop(): void {
    clearTimeout(this.#retry)
  }

  async #run(): Promise<void> {
    const h = this.#h
    const adm = h.admission
    try {
      await this.#catchUp()
      while (adm.count - adm.aside > 0 && !h.closed()) {
        const room = adm.pageRoom()
        const byteRoom = adm.pageBytes()
        if (room <= 0 || byteRoom <= 0) return
        const limit = Math.min(room, this.#fits(byteRoom))
        const until = adm.until
        // The head of the backlog is kept in memory: page it from there (none written yet: the
        // pager is poked again when one is).
        const fromMemory = h.kept() > 0
        const page = fromMemory ? h.keptPage(limit) : await this.#read(limit)
        if (fromMemory && page.length === 0) return
        let loaded = 0
        let consumed = 0
        let bytes = 0
        let asideBytes = 0
        let full = false
        const now = Date.now()
        const served = h.served()
        for (const e of page) {
          if (!h.skip(e.id)) {
            const place = h.place(e, served)
            // Nobody takes any queue: the rest stays on disk until a worker comes (wake()).
            if (place === "stop") {
              full = true
              break
            }
            if (place === "aside") {
              h.setAside(e)
              asideBytes += e.payload.length
            } else {
              // The window's bytes are full (an empty window takes one message of any size):
              // the rest stays on disk, read again next time.
              if (e.payload.length > adm.pageBytes()) {
                full = true
                break
              }
              loaded++
              h.load(e, now)
            }
          }
          adm.after = e.id
          consumed++
          bytes += e.payload.length
        }
        if (this.#bytesEstimated && consumed > 0) {
          // A backlog found at open: its size in bytes is estimated from its first page.
          this.#bytesEstimated = false
          adm.bytes = Math.round((bytes / consumed) * adm.count)
        }
        // What was set aside stays on disk, counted in the backlog.
        adm.bytes = Math.max(0, adm.bytes - (bytes - asideBytes))
        if (fromMemory) {
          if (adm.after !== undefined) h.dropKept(adm.after)
          adm.count = Math.max(0, adm.count - loaded)
        } else if (!full && page.length < limit && adm.until === until) {
          // Everything up to `until` is in memory or set aside, and nothing was added.
          adm.count = adm.aside
          adm.bytes = adm.asideBytes
        } else adm.count = Math.max(0, adm.count - loaded)
        if (full) return // paged in again when the window has half emptied
        // Exactly a page left, or counts that drifted: ask the journal.
        if (
          !fromMemory &&
          adm.count - adm.aside === 0 &&
          page.length === limit &&
          (await this.#read(1)).length > 0
        )
          adm.count = 1
      }
    } catch (err) {
      if (h.closed()) return
      // Nobody waits for a page: report it and try again shortly.
      h.error(toError(err))
      this.#retry = setTimeout(() => this.poke(), 1000)
      this.#retry.unref()
    } finally {
      h.paged()
    }
  }

  /**
   * Reads back the messages set aside for each queue a connected worker takes now, in id order,
   * as far as the window has room: only that queue's entries of the range it passed are loaded
   * (the others are in memory, done, or set aside for their own queues).
   */
  async #catchUp(): Promise<void> {
    const h = this.#h
    const adm = h.admission
    for (const q of h.catchUps()) {
      while (q.asideFrom !== undefined && q.takers > 0 && !h.closed()) {
        const limit = adm.pageRoom()
        if (limit <= 0 || adm.pageBytes() <= 0) return
        const range: { after?: string; until?: string; limit: number } = { limit }
        if (q.asideFrom !== "") range.after = q.asideFrom
        if (q.asideTo !== undefined) range.until = q.asideTo
        const from = q.asideFrom
        const to = q.asideTo
        const page = await h.journal.pending(range)
        // Its last worker left meanwhile (what is set aside stays so), or more was set aside
        // while the page was read (read again, next time round).
        if (q.takers === 0 || q.asideFrom !== from || q.asideTo !== to) {
          this.#missed = true
          break
        }
        const now = Date.now()
        let full = false
        for (const e of page) {
          if ((e.queue ?? DEFAULT_QUEUE) === q.name && !h.skip(e.id)) {
            if (e.payload.length > adm.pageBytes()) {
              full = true
              break
            }
            q.aside--
            q.asideBytes -= e.payload.length
            adm.aside--
            adm.asideBytes -= e.payload.length
            adm.count--
            adm.bytes -= e.payload.length
            h.load(e, now)
          }
          q.asideFrom = e.id
        }
        if (full) return
        if (page.length < limit) {
          // All of it is back. Counts that drifted (a message that left the disk meanwhile)
          // are put right.
          adm.aside -= q.aside
          adm.asideBytes -= q.asideBytes
          adm.count -= q.aside
          adm.bytes -= q.asideBytes
          q.aside = 0
          q.asideBytes = 0
          q.asideFrom = undefined
          q.asideTo = undefined
        }
      }
    }
  }

  /**
   * Entries to read for `byteRoom` free bytes: as many as fit at the backlog's mean payload size
   * (one more, so the window fills), one while that size is unknown (a backlog found at open).
   */
  #fits(byteRoom: number): number {
    const adm = this.#h.admission
    if (this.#bytesEstimated) return 1
    if (adm.count === 0 || adm.bytes === 0) return Infinity
    const free = Math.min(byteRoom, this.#h.windowBytes)
    return free === Infinity ? Infinity : Math.ceil(free / (adm.bytes / adm.count)) + 1
  }

  #read(limit: number): Promise<JournalEntry[]> {
    const { after, until } = this.#h.admission
    const range: { after?: string; until?: string; limit: number } = { limit }
    if (after !== undefined) range.after = after
    if (until !== undefined) range.until = until
    return this.#h.journal.pending(range)
  }
}
