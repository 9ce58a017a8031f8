/**
 * The state of a `LevelJournal.repair()` in progress (counters, changes, findings), the report it
 * ends with, and what it asks of keys and values: which key a value names, whether a value fits
 * its key.
 */
import {
  BATCH,
  batchValueKey,
  decodeAcks,
  decodeBatch,
  parseBatchKey,
  popcount,
} from "./level-batch.js"
import type { Db } from "./level-db.js"
import { inlineValue } from "./level-values.js"
import {
  DEAD,
  PENDING,
  QUARANTINE,
  addKey,
  decodeEntry,
  identifyValue,
  isEntryKey,
  isStoredId,
  maxId,
  removeKey,
} from "./level-format.js"
/** An entry a repair could not keep. */
export interface LostEntry {
  /** Its id, as far as it could be read (a damaged key may have changed it). */
  id: string
  /** Pending entry, dead letter or scheduled entry; undefined when that could not be read either. */
  state: "pending" | "dead" | "scheduled" | undefined
  /** Why it is lost, and where what is left of it went (`q:` keys). */
  reason: string
  /**
   * How many entries this line stands for, when more than one: the pending messages of a damaged
   * batch (whose `id` is the batch's first).
   */
  count?: number
}

/** What {@link LevelJournal.repair} did and what it could not keep. */
export interface LevelJournalRepairReport {
  /** Pending entries after the repair. */
  pending: number
  /** Dead letters after the repair. */
  dead: number
  /** Scheduled entries after the repair. */
  scheduled: number
  /**
   * What the journal's counters said before the repair (its newest readable state record);
   * undefined when none could be read.
   */
  before: { pending: number; dead: number; scheduled: number } | undefined
  /**
   * Entries lost: those in `lostEntries`, plus those the counters show missing whose ids could
   * not be read. 0 means nothing was lost, unless `warnings` says the repair cannot tell.
   */
  lost: number
  /** The lost entries whose ids could be read, in key order, then in log order. */
  lostEntries: LostEntry[]
  /**
   * Entries put back: keys restored from the id inside their value, and writes that LevelDB
   * dropped from a damaged log record written again (their values passed their checksums).
   */
  recovered: number
  /**
   * Acknowledged messages that are pending again because the deletion that acked them was in a
   * damaged log record: they will be delivered again (at-least-once), not lost.
   */
  redelivered: number
  /** Damaged entries moved aside under the `q:` prefix by this repair (kept, never read). */
  quarantined: number
  /** Bytes of the write-ahead log that LevelDB could not read and dropped. */
  droppedLogBytes: number
  /**
   * The damage found in the files, one line per place: `000005.log: checksum mismatch at offset
   * 4242`, `000007.ldb: data block at offset 8192: checksum mismatch`.
   */
  damage: string[]
  /**
   * Damaged table files moved aside (paths relative to the journal's directory); what they held
   * that could be checked was put back.
   */
  movedAside: string[]
  /** True when LevelDB's own repair had to run (a damaged table, or a database that would not open). */
  levelRepaired: boolean
  /** What the repair cannot vouch for; each one also means that entries may have been lost. */
  warnings: string[]
}

/** Where a key ends up: a value to write, or undefined to delete it. */
export type Change = Buffer | undefined

/** Where a record comes from: LevelDB's view of the database, or a damaged table moved aside. */
export type Source = "db" | "table"

/** The state of a repair in progress: counters, changes and findings. */
export class Repair {
  readonly db: Db
  /** The journal's directory: pointers into its value log are read from there. */
  readonly dir: string
  readonly changes = new Map<string, Change>()
  readonly lost = new Map<string, LostEntry>()
  readonly unkeyed: LostEntry[] = []
  pending = 0
  dead = 0
  scheduled = 0
  /** Send-id records (`k:` keys) kept. */
  dedupe = 0
  keySum = 0
  /** The greatest id seen anywhere: ids must stay unique, so it only grows. */
  lastId: string | undefined
  recovered = 0
  redelivered = 0
  quarantined = 0
  /** The sum of every entry-shaped key as LevelDB returned it, before any change. */
  foundSum = 0
  /** What that sum should have been, as far as the changes tell. */
  expectedSumDelta = 0
  quarantinedStrange = false
  /** What the report's warnings must say besides (about batches). */
  readonly notes: string[] = []
  /** The newest state record of the damaged tables, when it is newer than the database's. */
  tableMeta: Buffer | undefined

  constructor(db: Db, dir: string) {
    this.db = db
    this.dir = dir
  }

  /** Counts a key that holds a good entry, batch or bitmap (`value`, for a bitmap). */
  count(key: string, delta: 1 | -1 = 1, value?: Buffer): void {
    const batch = parseBatchKey(key)
    if (batch === undefined) {
      if (key.startsWith(PENDING)) this.pending += delta
      else if (key.startsWith(DEAD)) this.dead += delta
      else this.scheduled += delta
    } else if (key.startsWith(BATCH)) this.pending += delta * batch.count
    else {
      const acked = value && decodeAcks(key, value)
      if (typeof acked === "object") this.pending -= delta * popcount(acked)
    }
    this.keySum = delta === 1 ? addKey(this.keySum, key) : removeKey(this.keySum, key)
  }

  seeId(id: string | undefined): void {
    if (id !== undefined && isStoredId(id)) this.lastId = maxId(this.lastId, id)
  }

  /** Notes the ids a key names: its own, or a batch's last. */
  seeKey(key: string): void {
    const batch = parseBatchKey(key)
    this.seeId(batch === undefined ? key.slice(2) : batch.last)
  }

  /** Moves a damaged record aside under `q:` + its key; records it as lost. */
  quarantine(key: string, value: Buffer, entry: LostEntry | undefined): void {
    this.changes.set(QUARANTINE + key, value)
    if (!this.changes.has(key)) this.changes.set(key, undefined)
    this.quarantined++
    if (entry === undefined) return
    if (isJournalKey(key)) this.lost.set(key, entry)
    else this.unkeyed.push(entry)
  }

  /** Writes a good entry under its key, counting it unless it was counted already. */
  async restore(key: string, value: Buffer): Promise<void> {
    const old = await this.#counted(key)
    if (old !== undefined) this.count(key, -1, old)
    this.count(key, 1, value)
    this.changes.set(key, value)
    this.lost.delete(key)
    this.recovered++
    this.seeKey(key)
  }

  /** Deletes an entry (that a deletion in a damaged table had deleted). */
  async remove(key: string): Promise<void> {
    const old = await this.#counted(key)
    if (old !== undefined) this.count(key, -1, old)
    this.changes.set(key, undefined)
  }

  /** The value a key holds once the changes so far are made. */
  async current(key: string): Promise<Buffer | undefined> {
    if (this.changes.has(key)) return this.changes.get(key)
    return this.db.get(key) // level's types leave out the undefined of a missing key
  }

  /** The value of the key when it holds one the repair counts (so far). */
  async #counted(key: string): Promise<Buffer | undefined> {
    const value = await this.current(key)
    if (this.changes.has(key)) return value
    return value !== undefined && fits(key, value, this.dir) ? value : undefined
  }
}

/** The key a value of format 2 belongs under (it carries its kind and id). */
export function keyNamedBy(value: Buffer | undefined, dir: string): string | undefined {
  const identity = value && identifyValue(value)
  if (typeof identity === "object" && identity.id !== undefined)
    return identity.prefix + identity.id
  const inline = value && inlineValue(dir, value)
  return typeof inline === "object" ? batchValueKey(inline) : undefined
}

/** A key of an entry (pending, dead or scheduled), a batch or a bitmap. */
export function isJournalKey(key: string): boolean {
  return isEntryKey(key) || parseBatchKey(key) !== undefined
}

/** True when `value` is sound and belongs under `key` (a pointer: what it points to). */
export function fits(key: string, value: Buffer, dir: string): boolean {
  if (isEntryKey(key)) return typeof decodeEntry(key, value) !== "string"
  if (key.startsWith(BATCH)) {
    const inline = inlineValue(dir, value)
    return typeof inline === "object" && typeof decodeBatch(key, inline) !== "string"
  }
  return typeof decodeAcks(key, value) !== "string"
}

/** The entries lines of `lostEntries` stand for. */
export function linesCount(lines: readonly LostEntry[]): number {
  let n = 0
  for (const e of lines) n += e.count ?? 1
  return n
}

export function stateOf(prefix: string): "pending" | "dead" | "scheduled" {
  return prefix === PENDING ? "pending" : prefix === DEAD ? "dead" : "scheduled"
}
