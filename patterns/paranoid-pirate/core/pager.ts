/**
 * Pages the backlog (messages on disk, not in memory) into the window, oldest first: at open
 * (a restarted sender) and whenever the window has half emptied while sends wait on disk.
 */
import { toError } from "../../../lib/errors.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"

export interface PagerHost {
  readonly journal: Journal
  readonly admission: Admission
  readonly window: number
  inWindow(): number
  has(id: string): boolean
  /** Puts an entry read from the journal into the window. */
  load(entry: JournalEntry, now: number): void
  closed(): boolean
  /** A page was read (or the pager stopped): producers may get in, the sender may be drained. */
  paged(): void
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

  /** Pages in when the window has half emptied: by halves of the window, not one per ack. */
  poke(): void {
    const h = this.#h
    if (h.admission.count > 0 && !h.closed() && h.inWindow() <= h.window / 2) void this.#launch()
  }

  #launch(): Promise<void> {
    if (this.#running) {
      this.#missed = true // room freed while a page was read: look again when it is done
      return this.#running
    }
    // Cleared in a callback, which always runs later: #run() may finish without awaiting.
    const run: Promise<void> = this.#run().finally(() => {
      if (this.#running === run) this.#running = undefined
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
      while (adm.count > 0 && !h.closed()) {
        const room = adm.pageRoom()
        if (room <= 0) return
        const until = adm.until
        const page = await this.#read(room)
        let loaded = 0
        let bytes = 0
        const now = Date.now()
        for (const e of page) {
          adm.after = e.id
          bytes += e.payload.length
          if (h.has(e.id)) continue
          loaded++
          h.load(e, now)
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
        // Exactly a page left, or counts that drifted: ask the journal.
        if (adm.count === 0 && page.length === room && (await this.#read(1)).length > 0)
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

  #read(limit: number): Promise<JournalEntry[]> {
    const { after, until } = this.#h.admission
    const range: { after?: string; until?: string; limit: number } = { limit }
    if (after !== undefined) range.after = after
    if (until !== undefined) range.until = until
    return this.#h.journal.pending(range)
  }
}
