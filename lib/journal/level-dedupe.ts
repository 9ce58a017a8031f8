/**
 * The send ids' records of `LevelJournal` (format 6): `k:<send id as hex>` holds the message a
 * send id named and, once that message was acked, when; `K:<acked time><send id as hex>` orders
 * the acked ones by time, so that forgetting those acked before a time is a range read. Each
 * function adds its changes to a write (`ops`, counted in `next`) that the journal commits with
 * the rest of it: a record is written, acked and forgotten in the same write as its message.
 */
import { describe } from "../validate.js"
import { getMany, type Db } from "./level-db.js"
import { corruptValue } from "./level-errors.js"
import {
  DEDUPE,
  DEDUPE_INDEX,
  added,
  checkDedupeId,
  decodeDedupe,
  dedupeIndexKey,
  dedupeKey,
  encodeDedupe,
  parseDedupeIndexKey,
  removed,
  sortableTime,
  type Counters,
} from "./level-format.js"
import type { Op } from "./level-batch-store.js"
import type { DedupeRecord, JournalEntry } from "./types.js"

const EMPTY = Buffer.alloc(0)

/** The most send ids one write of `dedupeForget()` forgets. */
const FORGET_BATCH = 10_000

/** A page of `forgetPage()`: how many it forgot, whether it was the last, where it stopped. */
export interface ForgetPage {
  forgotten: number
  done: boolean
  reached: string
}

export class SendIdRecords {
  readonly #path: string
  /**
   * No `K:` key sorts below this one (as the journal's due-time index floor): `forgetPage()`
   * reads from here and moves it up to where it stopped; an ack at an earlier time moves it down.
   */
  #floor = DEDUPE_INDEX

  /** @param path - the journal's directory, named in the errors */
  constructor(path: string) {
    this.#path = path
  }

  /** The journal was (re)opened: nothing is known of the index. */
  reset(): void {
    this.#floor = DEDUPE_INDEX
  }

  /** The record of each send id (undefined: unknown, forgotten, or not storable), in order. */
  async lookup(
    read: <T>(run: (db: Db) => Promise<T>) => Promise<T>,
    dedupeIds: readonly string[],
  ): Promise<(DedupeRecord | undefined)[]> {
    const keys = dedupeIds.map((d) => {
      if (typeof d !== "string")
        throw new TypeError(`'dedupeIds' must hold strings, got ${describe(d)}`)
      return storableKey(d)
    })
    const present = keys.filter((k): k is string => k !== undefined)
    if (present.length === 0) return keys.map(() => undefined)
    const values = await read((db) => getMany(db, present))
    let i = 0
    return keys.map((key) => {
      if (key === undefined) return undefined
      const value = values[i++]
      return value === undefined ? undefined : this.#decode(key, value)
    })
  }

  /**
   * Adds to a write the deletion of up to FORGET_BATCH records acked before `before` (a range read
   * of the acked-time index, never a scan of every record); `forgotPage()` once it is committed.
   */
  async forgetPage(db: Db, before: number, ops: Op[], next: Counters): Promise<ForgetPage> {
    const lt = DEDUPE_INDEX + sortableTime(before)
    const floor = this.#floor
    if (floor >= lt) return { forgotten: 0, done: true, reached: floor }
    const keys = await db.keys({ gte: floor, lt, limit: FORGET_BATCH }).all()
    let forgotten = 0
    for (const key of keys) {
      const parsed = parseDedupeIndexKey(key)
      if (parsed === undefined) continue // no such key passes the open's key check
      ops.push({ type: "del", key }, { type: "del", key: DEDUPE + parsed.hex })
      removed(next, key)
      removed(next, DEDUPE + parsed.hex)
      forgotten++
    }
    const done = keys.length < FORGET_BATCH
    return { forgotten, done, reached: done ? lt : (keys[keys.length - 1] as string) }
  }

  /** A page was committed: every key below where it stopped is gone (writes wait for each other). */
  forgotPage(page: ForgetPage): void {
    if (page.reached > this.#floor) this.#floor = page.reached
  }

  /**
   * Adds to a write the records of the send ids of `entries` (not acked; the last entry of a
   * send id wins), replacing the records they had.
   */
  async rememberOps(
    db: Db,
    entries: readonly JournalEntry[],
    ops: Op[],
    next: Counters,
  ): Promise<void> {
    let byKey: Map<string, string> | undefined
    for (const e of entries) {
      if (e.dedupeId === undefined) continue
      ;(byKey ??= new Map()).set(dedupeKey(e.dedupeId), e.id)
    }
    if (byKey === undefined) return
    const keys = [...byKey.keys()]
    const old = next.dedupe > 0 ? await getMany(db, keys) : []
    keys.forEach((key, i) => {
      const value = old[i]
      if (value === undefined) added(next, key)
      else this.#unackOps(key, this.#decode(key, value), ops, next)
      const id = byKey.get(key) as string
      ops.push({ type: "put", key, value: encodeDedupe(key.slice(2), { id }) })
    })
  }

  /** Adds to a write: the send ids (keys) in `acked` acked at `at`, those in `forget` forgotten. */
  async ackOps(
    db: Db,
    acked: string[],
    forget: string[],
    at: number,
    ops: Op[],
    next: Counters,
  ): Promise<void> {
    const forgetting = new Set(forget)
    const keys = [...new Set([...acked, ...forget])]
    if (keys.length === 0 || next.dedupe === 0) return
    const values = await getMany(db, keys)
    keys.forEach((key, i) => {
      const value = values[i]
      if (value === undefined) return
      const record = this.#decode(key, value)
      if (forgetting.has(key)) {
        this.forgetOps(key, record, ops, next)
        return
      }
      this.#unackOps(key, record, ops, next)
      const k = dedupeIndexKey(at, key.slice(2))
      ops.push(
        { type: "put", key, value: encodeDedupe(key.slice(2), { id: record.id, ackedAt: at }) },
        { type: "put", key: k, value: EMPTY },
      )
      added(next, k)
      // Before the write: a forget that starts once it is done must not start above it.
      if (k < this.#floor) this.#floor = k
    })
  }

  /**
   * Adds to a write the deletion of the records under the keys of `named` that still name the
   * message given there (a later message may have taken a send id over: its record stays).
   */
  async forgetNamed(db: Db, named: Map<string, string>, ops: Op[], next: Counters): Promise<void> {
    if (named.size === 0) return
    const recordKeys = [...named.keys()]
    const records = await getMany(db, recordKeys)
    recordKeys.forEach((key, i) => {
      const value = records[i]
      if (value === undefined) return
      const record = this.#decode(key, value)
      if (record.id !== named.get(key)) return
      this.forgetOps(key, record, ops, next)
    })
  }

  /** Adds to a write the deletion of a send id's record and of its acked-time key. */
  forgetOps(key: string, record: DedupeRecord, ops: Op[], next: Counters): void {
    ops.push({ type: "del", key })
    removed(next, key)
    this.#unackOps(key, record, ops, next)
  }

  /** Adds to a write the deletion of a record's acked-time key, if it has one. */
  #unackOps(key: string, record: DedupeRecord, ops: Op[], next: Counters): void {
    if (record.ackedAt === undefined) return
    const k = dedupeIndexKey(record.ackedAt, key.slice(2))
    ops.push({ type: "del", key: k })
    removed(next, k)
  }

  #decode(key: string, value: Buffer): DedupeRecord {
    const record = decodeDedupe(key, value)
    if (typeof record === "string") throw corruptValue(this.#path, key, record)
    return record
  }
}

/** The key of a send id's record; undefined for a send id the journal cannot store (so cannot hold). */
function storableKey(dedupeId: string): string | undefined {
  try {
    return dedupeKey(checkDedupeId(dedupeId))
  } catch {
    return undefined
  }
}

/** The distinct keys of the send ids the journal can store. */
export function storableKeys(dedupeIds: readonly string[]): string[] {
  const keys = new Set<string>()
  for (const d of dedupeIds) {
    const key = storableKey(d)
    if (key !== undefined) keys.add(key)
  }
  return [...keys]
}
