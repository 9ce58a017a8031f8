import { randomBytes } from "node:crypto"
import { ownBody } from "../body.js"
import type { DeadLetter, Journal, JournalEntry, JournalStats, JournalUpdate } from "./types.js"

/** Keeps messages in this process's memory: fast, and lost with the process. */
export class MemoryJournal implements Journal {
  readonly persistent = false
  readonly #pending = new Map<string, JournalEntry>()
  readonly #dead = new Map<string, DeadLetter>()
  /** Scheduled entries by id, and the same sorted by (notBefore, id). */
  readonly #scheduled = new Map<string, JournalEntry>()
  readonly #due: JournalEntry[] = []
  #lastId: string | undefined
  /** New with each instance, as its messages are: nothing it held outlives the process. */
  readonly #senderId = randomBytes(16).toString("hex")

  async open(): Promise<void> {}
  async close(): Promise<void> {}

  async append(entries: readonly JournalEntry[]): Promise<void> {
    for (const e of entries) {
      this.#pending.set(e.id, { ...e })
      this.#bump(e.id)
    }
  }

  async remove(ids: readonly string[]): Promise<void> {
    for (const id of ids) this.#pending.delete(id)
  }

  async update(updates: readonly JournalUpdate[]): Promise<void> {
    for (const u of updates) {
      const e = this.#pending.get(u.id)
      if (!e) continue
      e.attempts = u.attempts
      if (u.lastError === undefined) delete e.lastError
      else e.lastError = u.lastError
      if (u.notBefore === undefined) delete e.notBefore
      else e.notBefore = u.notBefore
    }
  }

  async schedule(entries: readonly JournalEntry[]): Promise<void> {
    for (const e of entries) {
      const notBefore: unknown = e.notBefore
      if (typeof notBefore !== "number" || !Number.isFinite(notBefore))
        throw new TypeError(`'notBefore' must be a finite number, got ${String(notBefore)}`)
    }
    for (const e of entries) {
      this.#unschedule(e.id)
      const copy = { ...e }
      this.#scheduled.set(e.id, copy)
      this.#due.splice(this.#dueIndex(copy.notBefore as number, copy.id), 0, copy)
      this.#bump(e.id)
    }
  }

  async due(options: { until: number; limit: number }): Promise<JournalEntry[]> {
    const end = Math.min(this.#dueIndex(options.until, "\uffff"), options.limit)
    return this.#due.slice(0, end).map((e) => ({ ...e }))
  }

  async nextDue(): Promise<number | undefined> {
    return this.#due[0]?.notBefore
  }

  async promote(entries: readonly JournalEntry[]): Promise<string[]> {
    const moved: string[] = []
    for (const { id } of entries) {
      const e = this.#unschedule(id)
      if (e === undefined) continue
      this.#pending.set(id, e)
      moved.push(id)
    }
    return moved
  }

  async unschedule(ids: readonly string[]): Promise<string[]> {
    const deleted: string[] = []
    for (const id of ids) if (this.#unschedule(id) !== undefined) deleted.push(id)
    return deleted
  }

  async bury(letters: readonly DeadLetter[]): Promise<void> {
    for (const d of letters) {
      this.#pending.delete(d.id)
      // Kept for long: not as a view that would keep a whole scratch buffer or page alive.
      this.#dead.set(d.id, { ...d, payload: ownBody(d.payload) })
      this.#bump(d.id)
    }
  }

  async pending(options: {
    after?: string
    until?: string
    limit: number
  }): Promise<JournalEntry[]> {
    return select(this.#pending, options.after, options.until, options.limit).map((e) => ({ ...e }))
  }

  async dead(options: { after?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    return select(this.#dead, options.after, undefined, options.limit ?? Infinity).map((e) => ({
      ...e,
    }))
  }

  async replay(ids: readonly string[]): Promise<JournalEntry[]> {
    const moved: JournalEntry[] = []
    for (const id of [...new Set(ids)].sort()) {
      const d = this.#dead.get(id)
      if (!d) continue
      this.#dead.delete(id)
      const entry: JournalEntry = { id, payload: d.payload, attempts: 0, enqueuedAt: d.enqueuedAt }
      // Its priority and key stay; not its expiry, past which a replay would bury it again.
      if (d.priority !== undefined) entry.priority = d.priority
      if (d.key !== undefined) entry.key = d.key
      this.#pending.set(id, entry)
      moved.push({ ...entry })
    }
    return moved
  }

  async purgeDead(ids: readonly string[]): Promise<number> {
    let n = 0
    for (const id of ids) if (this.#dead.delete(id)) n++
    return n
  }

  async senderId(): Promise<string> {
    return this.#senderId
  }

  async lastId(): Promise<string | undefined> {
    return this.#lastId
  }

  async stats(): Promise<JournalStats> {
    return { pending: this.#pending.size, dead: this.#dead.size, scheduled: this.#scheduled.size }
  }

  #bump(id: string): void {
    if (this.#lastId === undefined || id > this.#lastId) this.#lastId = id
  }

  /** Where (notBefore, id) goes in `#due`: the number of entries before it. */
  #dueIndex(notBefore: number, id: string): number {
    let lo = 0
    let hi = this.#due.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const e = this.#due[mid] as JournalEntry
      const t = e.notBefore as number
      if (t < notBefore || (t === notBefore && e.id < id)) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Deletes a scheduled entry; returns it, or undefined when it was not scheduled. */
  #unschedule(id: string): JournalEntry | undefined {
    const e = this.#scheduled.get(id)
    if (e === undefined) return undefined
    this.#scheduled.delete(id)
    const i = this.#dueIndex(e.notBefore as number, id)
    if (this.#due[i] === e) this.#due.splice(i, 1)
    return e
  }
}

function select<T extends { id: string }>(
  map: Map<string, T>,
  after: string | undefined,
  until: string | undefined,
  limit: number,
): T[] {
  const out: T[] = []
  for (const e of map.values()) {
    if (after !== undefined && e.id <= after) continue
    if (until !== undefined && e.id > until) continue
    out.push(e)
  }
  out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return out.length > limit ? out.slice(0, limit) : out
}
