import { randomBytes } from "node:crypto"
import { ownBody } from "../body.js"
import type { DeadLetter, Journal, JournalEntry, JournalStats, JournalUpdate } from "./types.js"

/** Keeps messages in this process's memory: fast, and lost with the process. */
export class MemoryJournal implements Journal {
  readonly persistent = false
  readonly #pending = new Map<string, JournalEntry>()
  readonly #dead = new Map<string, DeadLetter>()
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
      const entry = { id, payload: d.payload, attempts: 0, enqueuedAt: d.enqueuedAt }
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
    return { pending: this.#pending.size, dead: this.#dead.size }
  }

  #bump(id: string): void {
    if (this.#lastId === undefined || id > this.#lastId) this.#lastId = id
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
