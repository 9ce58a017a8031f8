import { randomBytes } from "node:crypto"
import { ownBody } from "../body.js"
import { describe } from "../validate.js"
import { checkDedupeChanges, checkDedupeId, checkTime } from "./level-format.js"
import { checkSenderId } from "./level-sender-id.js"
import type {
  DeadLetter,
  DedupeRecord,
  Journal,
  JournalEntry,
  JournalStats,
  JournalUpdate,
} from "./types.js"

/** Keeps messages in this process's memory: fast, and lost with the process. */
export class MemoryJournal implements Journal {
  readonly persistent = false
  readonly #pending = new Map<string, JournalEntry>()
  readonly #dead = new Map<string, DeadLetter>()
  /** Scheduled entries by id, and the same sorted by (notBefore, id). */
  readonly #scheduled = new Map<string, JournalEntry>()
  readonly #due: JournalEntry[] = []
  /** The record of each send id, and the send ids acked (in the order they were acked). */
  readonly #records = new Map<string, DedupeRecord>()
  readonly #acked = new Set<string>()
  #lastId: string | undefined
  /** New with each instance, as its messages are: nothing it held outlives the process. */
  #senderId = randomBytes(16).toString("hex")

  async open(): Promise<void> {}
  async close(): Promise<void> {}

  async append(entries: readonly JournalEntry[]): Promise<void> {
    for (const e of entries) if (e.dedupeId !== undefined) checkDedupeId(e.dedupeId)
    for (const e of entries) {
      this.#pending.set(e.id, { ...e })
      this.#remember(e)
      this.#bump(e.id)
    }
  }

  async remove(
    ids: readonly string[],
    dedupe?: { acked: readonly string[]; forget: readonly string[]; at: number },
  ): Promise<void> {
    if (dedupe !== undefined) checkDedupeChanges(dedupe)
    for (const id of ids) this.#pending.delete(id)
    if (dedupe === undefined) return
    for (const d of dedupe.acked) {
      const record = this.#records.get(d)
      if (record === undefined) continue
      record.ackedAt = dedupe.at
      this.#acked.delete(d)
      this.#acked.add(d)
    }
    for (const d of dedupe.forget) this.#forget(d)
  }

  async dedupeLookup(dedupeIds: readonly string[]): Promise<(DedupeRecord | undefined)[]> {
    return dedupeIds.map((d) => {
      if (typeof d !== "string")
        throw new TypeError(`'dedupeIds' must hold strings, got ${describe(d)}`)
      const record = this.#records.get(d)
      return record && { ...record }
    })
  }

  async dedupeForget(before: number): Promise<number> {
    checkTime("before", before)
    let n = 0
    for (const d of this.#acked) {
      if (((this.#records.get(d) as DedupeRecord).ackedAt as number) >= before) continue
      this.#forget(d)
      n++
    }
    return n
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
      if (e.dedupeId !== undefined) checkDedupeId(e.dedupeId)
    }
    for (const e of entries) {
      this.#unschedule(e.id)
      const copy = { ...e }
      this.#remember(e)
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
    for (const id of ids) {
      const e = this.#unschedule(id)
      if (e === undefined) continue
      // A cancelled message's send id is forgotten with it (unless a later message took it over).
      if (e.dedupeId !== undefined && this.#records.get(e.dedupeId)?.id === id)
        this.#forget(e.dedupeId)
      deleted.push(id)
    }
    return deleted
  }

  async bury(letters: readonly DeadLetter[]): Promise<void> {
    for (const d of letters) {
      // Its send id stays with it, given or not: purgeDead() forgets it with the letter.
      const dedupeId = d.dedupeId ?? this.#pending.get(d.id)?.dedupeId
      this.#pending.delete(d.id)
      // Kept for long: not as a view that would keep a whole scratch buffer or page alive.
      const letter = { ...d, payload: ownBody(d.payload) }
      if (dedupeId !== undefined) letter.dedupeId = dedupeId
      this.#dead.set(d.id, letter)
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
      // Its priority, key, queue and headers stay; not its expiry, past which a replay would
      // bury it again.
      if (d.priority !== undefined) entry.priority = d.priority
      if (d.key !== undefined) entry.key = d.key
      if (d.dedupeId !== undefined) entry.dedupeId = d.dedupeId
      if (d.queue !== undefined) entry.queue = d.queue
      if (d.headers !== undefined) entry.headers = d.headers
      this.#pending.set(id, entry)
      moved.push({ ...entry })
    }
    return moved
  }

  async purgeDead(ids: readonly string[]): Promise<number> {
    let n = 0
    for (const id of ids) {
      const d = this.#dead.get(id)
      if (d === undefined) continue
      this.#dead.delete(id)
      // Its send id goes with it, unless a later message took the send id over.
      if (d.dedupeId !== undefined && this.#records.get(d.dedupeId)?.id === id)
        this.#forget(d.dedupeId)
      n++
    }
    return n
  }

  async senderId(): Promise<string> {
    return this.#senderId
  }

  async adoptSenderId(id: string): Promise<void> {
    checkSenderId(id)
    this.#senderId = id
  }

  async lastId(): Promise<string | undefined> {
    return this.#lastId
  }

  async stats(): Promise<JournalStats> {
    const stats: JournalStats = {
      pending: this.#pending.size,
      dead: this.#dead.size,
      scheduled: this.#scheduled.size,
    }
    if (this.#records.size > 0) stats.dedupe = this.#records.size
    return stats
  }

  /** Writes the record of an entry's send id (not acked), replacing any it had. */
  #remember(e: JournalEntry): void {
    if (e.dedupeId === undefined) return
    this.#acked.delete(e.dedupeId)
    this.#records.set(e.dedupeId, { id: e.id })
  }

  #forget(dedupeId: string): void {
    this.#records.delete(dedupeId)
    this.#acked.delete(dedupeId)
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
