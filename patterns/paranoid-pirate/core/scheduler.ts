/**
 * Messages sent with a `delay` (or `notBefore`) to a persistent journal that keeps a scheduled
 * store (`Journal.schedule()`): they wait in the journal, ordered by due time, not in memory.
 * One timer for the earliest due time; when it fires, what is due is read in pages no larger
 * than the window's free room, moved to the pending messages in the journal (`promote()`), and
 * put into the window. So a million delayed messages cost a counter and a timer here.
 */
import { toError } from "../../../lib/errors.js"
import type { Journal, JournalEntry } from "../../../lib/journal/types.js"

/** The journal's scheduled store: the optional methods of `Journal`, all present. */
export type ScheduledStore = Required<
  Pick<Journal, "schedule" | "due" | "nextDue" | "promote" | "unschedule">
>

/** The store when the journal keeps one and outlives the process; else undefined. */
export function scheduledStore(journal: Journal): ScheduledStore | undefined {
  const j = journal as Partial<ScheduledStore> & Journal
  if (!j.persistent) return undefined
  if (!j.schedule || !j.due || !j.nextDue || !j.promote || !j.unschedule) return undefined
  return j as ScheduledStore
}

export interface SchedulerHost {
  /** Free places in the window (0: wait for `poke()`). */
  room(): number
  /** Free payload bytes in the window. */
  roomBytes(): number
  /** Puts a due entry, now pending in the journal, into the window. */
  load(entry: JournalEntry, now: number): void
  sync: boolean
  closed(): boolean
  /** A page was moved (or the scheduler stopped): the sender may be drained. */
  paged(): void
  error(err: Error): void
}

/** Due entries read at most per page. */
const PAGE = 1000
/** After a failed read or write, try again after this long. */
const RETRY_MS = 1000

export class Scheduler {
  readonly #store: ScheduledStore
  readonly #h: SchedulerHost
  /** Scheduled messages in the journal, and those being written there. */
  #count = 0
  #writing = 0
  /** The earliest due time known to be in the journal (Infinity: none, or not known yet). */
  #next = Infinity
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  /** Something may be due but the window had no room: look again when it frees. */
  #starved = false
  /** A send was written while a page was moved: look again when it is done. */
  #missed = false
  #stopped = false

  constructor(store: ScheduledStore, host: SchedulerHost) {
    this.#store = store
    this.#h = host
  }

  /** Scheduled messages (written or being written). */
  get count(): number {
    return this.#count + this.#writing
  }

  /** Busy: writing, or moving due messages into the window. */
  get busy(): boolean {
    return this.#writing > 0 || this.#running !== undefined
  }

  /** The page being moved, if any. */
  get running(): Promise<void> | undefined {
    return this.#running
  }

  /** At open: what the journal holds. */
  async start(count: number): Promise<void> {
    this.#count = count
    if (count > 0) this.#arm((await this.#store.nextDue()) ?? Infinity)
  }

  /** A scheduled send is on its way to the journal. */
  writing(): void {
    this.#writing++
  }

  /** A scheduled send is written (`ok`), or its write failed. */
  written(entry: JournalEntry, ok: boolean): void {
    this.#writing--
    if (!ok) return
    this.#count++
    const at = entry.notBefore ?? 0
    if (this.#running) this.#missed = true
    else if (at < this.#next) this.#arm(at)
  }

  /** An entry written to the scheduled store by someone else (a pair's hand-over). */
  adopted(entry: JournalEntry): void {
    this.#writing++
    this.written(entry, true)
  }

  /** Room freed in the window: move what is due, if anything waited for room. */
  poke(): void {
    if (this.#starved && this.#h.room() > 0) void this.#launch()
  }

  /** Deletes a scheduled message that is not due yet; true when it was one. */
  async cancel(id: string): Promise<boolean> {
    if (this.#count === 0) return false
    const removed = await this.#store.unschedule([id])
    if (removed.length === 0) return false
    this.#count = Math.max(0, this.#count - removed.length)
    return true
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #arm(at: number): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#next = at
    if (at === Infinity || this.#stopped) return
    // setTimeout takes at most 2^31-1 ms: a later time is armed again when that fires.
    const wait = Math.min(Math.max(0, at - Date.now()), 0x7fffffff)
    this.#timer = setTimeout(() => void this.#launch(), wait)
    this.#timer.unref?.()
  }

  #launch(): Promise<void> {
    if (this.#running) return this.#running
    const run: Promise<void> = this.#run().finally(() => {
      if (this.#running === run) this.#running = undefined
      this.#h.paged()
      if (this.#missed) {
        this.#missed = false
        if (!this.#stopped) void this.#launch()
      }
    })
    this.#running = run
    return run
  }

  async #run(): Promise<void> {
    const h = this.#h
    try {
      this.#starved = false
      while (this.#count > 0 && !this.#stopped && !h.closed()) {
        const now = Date.now()
        const room = Math.min(h.room(), PAGE)
        if (room <= 0 || h.roomBytes() <= 0) {
          this.#starved = true
          return
        }
        const due = await this.#store.due({ until: now, limit: room })
        if (due.length === 0) {
          this.#arm((await this.#store.nextDue()) ?? Infinity)
          return
        }
        // Only what was still scheduled moved: one cancelled meanwhile is not loaded.
        const moved = new Set(await this.#store.promote(due, { sync: h.sync }))
        this.#count = Math.max(0, this.#count - moved.size)
        if (h.closed()) return
        for (const e of due) if (moved.has(e.id)) h.load(e, now)
        if (due.length < room) {
          this.#arm((await this.#store.nextDue()) ?? Infinity)
          return
        }
      }
      if (this.#count === 0) this.#arm(Infinity)
    } catch (err) {
      if (h.closed() || this.#stopped) return
      h.error(toError(err))
      this.#arm(Date.now() + RETRY_MS)
    }
  }
}
