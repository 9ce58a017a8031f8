/**
 * The scheduled entries of `LevelJournal` (format 5): an entry due later is stored under
 * `s:<id>`, and its due time in the index `t:<due><id>`, so that what falls due first is a key
 * range read from the start of `t:`. Each function adds its changes to a write (`ops`, counted in
 * `next`) that the journal commits, or reads through the journal's handle.
 */
import { describe } from "../validate.js"
import type { Op } from "./level-batch-store.js"
import { getMany, type Db } from "./level-db.js"
import { corruptValue } from "./level-errors.js"
import {
  INDEX,
  SCHEDULED,
  added,
  decodeEntry,
  dedupeKey,
  indexKey,
  parseIndexKey,
  removed,
  sortableTime,
  type Counters,
} from "./level-format.js"
import type { DeadLetter, JournalEntry } from "./types.js"

const EMPTY = Buffer.alloc(0)

export class ScheduledIndex {
  readonly #path: string
  /**
   * No `t:` key sorts below this one: where the reads of the index start. A queue deletes keys in
   * the order it wrote them, and a read from the start of a range it keeps deleting would step
   * over every deletion LevelDB has not compacted away yet (all the promoted entries): a scan that
   * grows with the messages delivered. Moved up to the first key a read finds; moved down by a
   * `schedule()` of an earlier time.
   */
  #floor = INDEX

  /** @param path - the journal's directory, named in the errors */
  constructor(path: string) {
    this.#path = path
  }

  /** The journal was (re)opened. */
  reset(): void {
    this.#floor = INDEX
  }

  /**
   * Adds to a write the entries of `byId` (their values encoded) with their index keys, replacing
   * those scheduled already under the same ids (only an id at or below `lastId` can be).
   */
  async scheduleOps(
    db: Db,
    byId: Map<string, { entry: JournalEntry; value: Buffer }>,
    lastId: string | undefined,
    ops: Op[],
    next: Counters,
  ): Promise<void> {
    const old = [...byId.keys()].filter((id) => lastId !== undefined && id <= lastId)
    const values =
      old.length > 0
        ? await getMany(
            db,
            old.map((id) => SCHEDULED + id),
          )
        : []
    old.forEach((id, i) => {
      const value = values[i]
      if (value === undefined) return
      const t = this.indexKeyOf(id, value)
      ops.push({ type: "del", key: t }, { type: "del", key: SCHEDULED + id })
      removed(next, t)
      removed(next, SCHEDULED + id)
    })
    for (const [id, { entry, value }] of byId) {
      const t = indexKey(entry.notBefore as number, id)
      ops.push({ type: "put", key: SCHEDULED + id, value }, { type: "put", key: t, value: EMPTY })
      added(next, SCHEDULED + id)
      added(next, t)
      // Before the write: a read that starts once it is done must not start above it.
      if (t < this.#floor) this.#floor = t
    }
  }

  /** Scheduled entries with `notBefore <= until`, earliest first (ties in id order), at most `limit`. */
  async due(db: Db, until: number, limit: number): Promise<JournalEntry[]> {
    // Every key of a due time at or below `until`: its hex digits, then any id ('g' > 'f').
    const lt = until === Infinity ? "t;" : INDEX + sortableTime(until) + "g"
    const floor = this.#floor
    const keys = await db.keys({ gte: floor, lt, limit: limit === Infinity ? -1 : limit }).all()
    this.#raise(floor, keys[0])
    const ids = keys.map((k) => (parseIndexKey(k) as { id: string }).id)
    const values =
      ids.length > 0
        ? await getMany(
            db,
            ids.map((id) => SCHEDULED + id),
          )
        : []
    const out: JournalEntry[] = []
    ids.forEach((id, i) => {
      const value = values[i]
      // Promoted or unscheduled by a write between the two reads (reads do not wait for
      // writes); a `t:` key without its entry otherwise fails the open's key check.
      if (value !== undefined) out.push(this.#decode(SCHEDULED + id, value))
    })
    return out
  }

  /** The earliest `notBefore` among scheduled entries; undefined when there is none. */
  async nextDue(db: Db): Promise<number | undefined> {
    const floor = this.#floor
    const [first] = await db.keys({ gte: floor, lt: "t;", limit: 1 }).all()
    this.#raise(floor, first ?? "t;")
    return first === undefined ? undefined : parseIndexKey(first)?.notBefore
  }

  /**
   * Adds to a write the deletion of the scheduled entries of `wanted` that are there; returns
   * their ids, and the keys of their send ids' records with the id each should still name.
   */
  async unscheduleOps(
    db: Db,
    wanted: string[],
    ops: Op[],
    next: Counters,
  ): Promise<{ deleted: string[]; named: Map<string, string> }> {
    const values = await getMany(
      db,
      wanted.map((id) => SCHEDULED + id),
    )
    const deleted: string[] = []
    const named = new Map<string, string>()
    wanted.forEach((id, i) => {
      const value = values[i]
      if (value === undefined) return
      const e = this.#decode(SCHEDULED + id, value)
      const t = indexKey(e.notBefore as number, id)
      ops.push({ type: "del", key: SCHEDULED + id }, { type: "del", key: t })
      removed(next, SCHEDULED + id)
      removed(next, t)
      if (e.dedupeId !== undefined) named.set(dedupeKey(e.dedupeId), id)
      deleted.push(id)
    })
    return { deleted, named }
  }

  /** The index key of the scheduled entry `id` whose value is `stored`. */
  indexKeyOf(id: string, stored: Buffer): string {
    return indexKey(this.#decode(SCHEDULED + id, stored).notBefore as number, id)
  }

  /**
   * A read from `floor` found `first` first (or nothing below it): no key lies between them, unless
   * a `schedule()` lowered the floor meanwhile (reads do not wait for writes).
   */
  #raise(floor: string, first: string | undefined): void {
    if (first !== undefined && this.#floor === floor && first > floor) this.#floor = first
  }

  #decode(key: string, value: Buffer): JournalEntry | DeadLetter {
    const entry = decodeEntry(key, value)
    if (typeof entry === "string") throw corruptValue(this.#path, key, entry)
    return entry
  }
}

/** A scheduled entry's due time must be a finite number: it orders the `t:` index. */
export function checkNotBefore(notBefore: unknown): void {
  if (typeof notBefore !== "number")
    throw new TypeError(`'notBefore' must be a number, got ${describe(notBefore)}`)
  if (!Number.isFinite(notBefore))
    throw new RangeError(`'notBefore' must be finite, got ${notBefore}`)
}
