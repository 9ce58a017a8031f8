/**
 * `LevelJournal.repair()`: repairs a damaged journal in place and reports every entry it could
 * not keep.
 *
 * What it compares: the counters the journal stored last (in its newest readable state record,
 * which its log may still hold when LevelDB is about to drop it) against what is left after
 * LevelDB replayed its logs (or after LevelDB's own repair); the writes LevelDB drops from a
 * damaged log, read before LevelDB deletes it; and every key and value, checked against each
 * other. Entries that can be put back are put back: a value carries its id and kind under its
 * own checksum, so a damaged key is restored from it, and a write dropped from the log whose
 * values pass their checksums is written again.
 */
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { Level } from "level"
import { PirateError } from "../errors.js"
import { OPEN_OPTIONS, inspectDir, notAJournal, type Db } from "./level-db.js"
import { levelCode, openFailure } from "./level-errors.js"
import {
  DEAD,
  META,
  PENDING,
  QUARANTINE,
  addKey,
  decodeEntry,
  decodeMeta,
  encodeMeta,
  identifyValue,
  isEntryKey,
  isQuarantineKey,
  isStoredId,
  keyHash,
  maxId,
  type Counters,
} from "./level-format.js"
import { readLogHistory, type LogHistory } from "./level-log.js"
import { readTable } from "./level-table.js"

/** An entry a repair could not keep. */
export interface LostEntry {
  /** Its id, as far as it could be read (a damaged key may have changed it). */
  id: string
  /** Pending entry or dead letter; undefined when that could not be read either. */
  state: "pending" | "dead" | undefined
  /** Why it is lost, and where what is left of it went (`q:` keys). */
  reason: string
}

/** What {@link LevelJournal.repair} did and what it could not keep. */
export interface LevelJournalRepairReport {
  /** Pending entries after the repair. */
  pending: number
  /** Dead letters after the repair. */
  dead: number
  /**
   * What the journal's counters said before the repair (its newest readable state record);
   * undefined when none could be read.
   */
  before: { pending: number; dead: number } | undefined
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
  /** True when LevelDB's own repair had to run (the database would not open or read). */
  levelRepaired: boolean
  /** What the repair cannot vouch for; each one also means that entries may have been lost. */
  warnings: string[]
}

/** Where a key ends up: a value to write, or undefined to delete it. */
type Change = Buffer | undefined

/** The state of a repair in progress: counters, changes and findings. */
class Repair {
  readonly changes = new Map<string, Change>()
  readonly lost = new Map<string, LostEntry>()
  readonly unkeyed: LostEntry[] = []
  /** The keys LevelDB's iterator returned (the others in the tables are hidden from it). */
  readonly seen = new Set<string>()
  pending = 0
  dead = 0
  keySum = 0
  /** The greatest id seen anywhere: ids must stay unique, so it only grows. */
  lastId: string | undefined
  recovered = 0
  redelivered = 0
  quarantined = 0
  /** The sum of every entry-shaped key as the scan found it, before any change. */
  foundSum = 0
  /** What that sum should have been, as far as the changes tell. */
  expectedSumDelta = 0
  quarantinedStrange = false
  /** Damage found in the files, one line per place. */
  readonly damage: string[] = []

  readonly db: Db

  constructor(db: Db) {
    this.db = db
  }

  /** Counts a key that holds a good entry. */
  count(key: string): void {
    if (key.startsWith(PENDING)) this.pending++
    else this.dead++
    this.keySum = addKey(this.keySum, key)
  }

  seeId(id: string | undefined): void {
    if (id !== undefined && isStoredId(id)) this.lastId = maxId(this.lastId, id)
  }

  /** Moves a damaged record aside under `q:` + its key; records it as lost. */
  quarantine(key: string, value: Buffer, entry: LostEntry | undefined): void {
    this.changes.set(QUARANTINE + key, value)
    if (!this.changes.has(key)) this.changes.set(key, undefined)
    this.quarantined++
    if (entry === undefined) return
    if (isEntryKey(key)) this.lost.set(key, entry)
    else this.unkeyed.push(entry)
  }

  /** Writes a good entry under its key, counting it unless it was counted already. */
  async restore(key: string, value: Buffer): Promise<void> {
    if (!(await this.#counted(key))) this.count(key)
    this.changes.set(key, value)
    this.lost.delete(key)
    this.recovered++
    this.seeId(key.slice(2))
  }

  /** The value a key holds once the changes so far are made. */
  async current(key: string): Promise<Buffer | undefined> {
    if (this.changes.has(key)) return this.changes.get(key)
    return this.db.get(key) // level's types leave out the undefined of a missing key
  }

  /** True when the key holds an entry the repair counts (so far). */
  async #counted(key: string): Promise<boolean> {
    if (this.changes.has(key)) return this.changes.get(key) !== undefined
    if (!this.seen.has(key)) return false
    const value = await this.current(key)
    return value !== undefined && typeof decodeEntry(key, value) !== "string"
  }
}

/**
 * Repairs the journal in `dir`: see the top of this file and `LevelJournal.repair`.
 *
 * @throws PirateError `PIRATE_JOURNAL_LOCKED`, `PIRATE_NOT_FOUND`, `PIRATE_JOURNAL_CORRUPT`
 */
export async function repairJournal(dir: string): Promise<LevelJournalRepairReport> {
  const found = await inspectDir(dir).catch(() => undefined)
  if (found === undefined || (!found.current && found.data.length === 0)) {
    throw new PirateError("PIRATE_NOT_FOUND", `there is no journal in ${dir} to repair`)
  }
  if (!found.current && found.foreign.length > 0) throw notAJournal(dir, found.foreign)
  // Read the logs first: LevelDB replays them on open, drops what it cannot read, deletes them.
  const history = await readLogHistory(dir)
  let levelRepaired = false
  let db = await openOrRepair(dir, () => (levelRepaired = true))
  try {
    let repair: Repair
    try {
      repair = await scan(db, dir)
    } catch (err) {
      // A damaged table: LevelDB's repair keeps what it can read of it.
      if (levelRepaired || !isCorruption(err)) throw openFailure(dir, err)
      await db.close()
      await runLevelRepair(dir)
      levelRepaired = true
      db = await open(dir)
      repair = await scan(db, dir).catch((err2: unknown) => {
        throw openFailure(dir, err2)
      })
    }
    const stored = await storedMeta(db, history)
    await replayDropped(repair, history)
    const before = stored && { pending: stored.pending, dead: stored.dead }
    repair.seeId(stored?.lastId)
    const counters: Counters = {
      pending: repair.pending,
      dead: repair.dead,
      lastId: repair.lastId,
      keySum: repair.keySum,
    }
    const batch = db.batch()
    for (const [key, value] of repair.changes) {
      if (value === undefined) batch.del(key)
      else batch.put(key, value)
    }
    batch.put(META, encodeMeta(counters))
    await batch.write({ sync: true })

    const lostEntries = [...repair.lost.values(), ...repair.unkeyed]
    const warnings: string[] = []
    let unidentified = 0
    if (stored === undefined) {
      if (levelRepaired || history.droppedBytes > 0) {
        warnings.push(
          "the journal's counters could not be read, so entries dropped without a trace cannot be counted",
        )
      }
    } else {
      const gap = stored.pending + stored.dead - (repair.pending + repair.dead) + repair.redelivered
      unidentified = Math.max(0, gap - lostEntries.length)
      // Keys that changed without changing shape show only in their sum (entries of format 1,
      // which carry no id, cannot be checked one by one).
      const expectedSum = (repair.foundSum + repair.expectedSumDelta) >>> 0
      if (
        stored.keySum !== undefined &&
        !levelRepaired &&
        history.droppedBytes === 0 &&
        !repair.quarantinedStrange &&
        expectedSum !== stored.keySum
      ) {
        warnings.push(
          "the keys disagree with their checksum and no damaged key was found: an entry written by the previous release may carry a damaged id",
        )
      }
    }
    return {
      pending: repair.pending,
      dead: repair.dead,
      before,
      lost: lostEntries.length + unidentified,
      lostEntries,
      recovered: repair.recovered,
      redelivered: repair.redelivered,
      quarantined: repair.quarantined,
      droppedLogBytes: history.droppedBytes,
      damage: [...history.problems, ...repair.damage],
      levelRepaired,
      warnings,
    }
  } finally {
    await db.close()
  }
}

/**
 * Opens the database without creating it (with CURRENT lost, LevelDB would start a new database
 * and delete the tables); runs LevelDB's repair when it will not open. LevelDB takes its LOCK
 * before it reads anything, so this open also tells whether a sender holds the journal; its
 * RepairDB does not lock, so it must only run after a failed open.
 */
async function openOrRepair(dir: string, repaired: () => void): Promise<Db> {
  const db = new Level<string, Buffer>(dir, { ...OPEN_OPTIONS, createIfMissing: false })
  try {
    await db.open()
    return db
  } catch (err) {
    const failure = openFailure(dir, err)
    if (failure.code === "PIRATE_JOURNAL_LOCKED") throw failure
    await runLevelRepair(dir)
    repaired()
    return open(dir)
  }
}

async function open(dir: string): Promise<Db> {
  const db = new Level<string, Buffer>(dir, { ...OPEN_OPTIONS, createIfMissing: false })
  try {
    await db.open()
  } catch (err) {
    throw openFailure(dir, err)
  }
  return db
}

async function runLevelRepair(dir: string): Promise<void> {
  await (Level as unknown as { repair(location: string): Promise<void> }).repair(dir)
}

function isCorruption(err: unknown): boolean {
  return levelCode(err) === "LEVEL_CORRUPTION" || /Corruption/.test(String(err))
}

/** A key to put back under the key its value names. */
interface Move {
  from: string
  to: string
  value: Buffer
  id: string
}

/**
 * Reads every entry, through LevelDB and then from the table files for what LevelDB's iterator
 * does not reach: counts the good ones, moves damaged ones aside, puts back hidden entries and
 * entries whose key is damaged (under the key their value names).
 */
async function scan(db: Db, dir: string): Promise<Repair> {
  const repair = new Repair(db)
  const moves: Move[] = []
  const it = db.iterator()
  try {
    for (;;) {
      const rows = await it.nextv(1_000)
      if (rows.length === 0) break
      for (const [key, value] of rows) {
        repair.seen.add(key)
        await examine(repair, key, value, true, moves)
      }
    }
  } finally {
    await it.close()
  }
  for (const [key, value] of await hiddenEntries(dir, repair.seen, repair.damage)) {
    await examine(repair, key, value, false, moves)
  }
  // A damaged key goes back to the key its value names, unless a good entry is there already.
  for (const move of moves) {
    repair.seeId(move.id)
    repair.expectedSumDelta += keyHash(move.to)
    if ((await repair.current(move.to)) !== undefined) {
      repair.quarantine(move.from, move.value, undefined) // a good entry is there already
    } else {
      if (!repair.changes.has(move.from)) repair.changes.set(move.from, undefined)
      await repair.restore(move.to, move.value)
    }
  }
  return repair
}

/**
 * Sorts one record out: a good entry is counted (or, when LevelDB's iterator did not reach it,
 * written again); one whose value names another key is to move there; the rest is moved aside.
 */
async function examine(
  repair: Repair,
  key: string,
  value: Buffer,
  visible: boolean,
  moves: Move[],
): Promise<void> {
  if (key === META || isQuarantineKey(key)) return
  const entryKey = isEntryKey(key)
  if (entryKey) {
    repair.foundSum = addKey(repair.foundSum, key)
    repair.seeId(key.slice(2))
    if (typeof decodeEntry(key, value) !== "string") {
      if (visible) repair.count(key)
      else await repair.restore(key, value)
      return
    }
  }
  const identity = identifyValue(value)
  // The id a damaged key still shows: `x:` and 16 hex digits (a damaged prefix).
  const shown = /^[^:]:([0-9a-f]{16})$/.exec(key)?.[1]
  const id = typeof identity === "string" ? undefined : (identity.id ?? shown)
  if (typeof identity !== "string" && id !== undefined && identity.prefix + id !== key) {
    moves.push({ from: key, to: identity.prefix + id, value, id })
    if (entryKey) repair.expectedSumDelta -= keyHash(key)
    return
  }
  if (!entryKey) repair.quarantinedStrange = true
  const state =
    typeof identity !== "string"
      ? stateOf(identity.prefix)
      : entryKey
        ? stateOf(key.slice(0, 2))
        : undefined
  const aside = `moved aside under ${JSON.stringify(QUARANTINE + key)}`
  const why = typeof identity === "string" ? identity : "its key is damaged"
  const readable = entryKey ? key.slice(2) : shown
  repair.quarantine(key, value, {
    id: readable ?? "",
    state,
    reason:
      readable === undefined
        ? `a key of no shape the journal writes (${JSON.stringify(key)}) with an unreadable value (${why}); ${aside}`
        : `${why}; ${aside}`,
  })
}

function stateOf(prefix: string): "pending" | "dead" {
  return prefix === PENDING ? "pending" : "dead"
}

/**
 * The entries of the table files that LevelDB's iterator did not return (`seen` holds what it
 * did): for each key, its newest version, when that is a put. Notes damaged blocks in `damage`.
 */
async function hiddenEntries(
  dir: string,
  seen: Set<string>,
  damage: string[],
): Promise<[string, Buffer][]> {
  const tables = (await readdir(dir)).filter((n) => /^\d+\.(ldb|sst)$/.test(n))
  // Newest first, so that a deletion is usually met before the older puts it hides.
  tables.sort((a, b) => parseInt(b, 10) - parseInt(a, 10))
  const newest = new Map<string, { sequence: number; value: Buffer | undefined }>()
  for (const name of tables) {
    const table = await readTable(join(dir, name))
    for (const problem of table.problems) damage.push(`${name}: ${problem}`)
    for (const e of table.entries) {
      if (seen.has(e.key)) continue
      const known = newest.get(e.key)
      if (known !== undefined && known.sequence >= e.sequence) continue
      // A copy: a view would keep the whole file in memory.
      newest.set(e.key, { sequence: e.sequence, value: e.value && Buffer.from(e.value) })
    }
  }
  const out: [string, Buffer][] = []
  for (const [key, { value }] of newest) if (value !== undefined) out.push([key, value])
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

/**
 * The counters before the repair: the newest state record in the logs (which may be in a record
 * LevelDB dropped), else the one in the database.
 */
async function storedMeta(
  db: Db,
  history: LogHistory,
): Promise<(Omit<Counters, "keySum"> & { keySum?: number }) | undefined> {
  for (let i = history.ops.length - 1; i >= 0; i--) {
    const op = history.ops[i]
    if (op?.key !== META || op.value === undefined) continue
    const meta = decodeMeta(op.value)
    if (typeof meta !== "string") return meta
  }
  const raw: Buffer | undefined = await db.get(META).catch(() => undefined)
  const meta = raw && decodeMeta(raw)
  return typeof meta === "object" ? meta : undefined
}

/**
 * The writes LevelDB dropped from damaged log records, in log order: the last write of each key
 * decides. A put whose value passes its checksum and names its key is written again; any other
 * put of a key that is now missing is lost; a deletion that was dropped brings the entry back.
 */
async function replayDropped(repair: Repair, history: LogHistory): Promise<void> {
  const last = new Map<string, { value: Buffer | undefined; dropped: boolean }>()
  for (const op of history.ops) {
    // A dropped put goes under the key its value names: the damage may be in the key.
    const named = op.dropped ? keyNamedBy(op.value) : undefined
    const key = named ?? (isEntryKey(op.key) ? op.key : undefined)
    if (key === undefined) continue
    repair.seeId(key.slice(2))
    last.set(key, op)
  }
  for (const [key, op] of last) {
    if (!op.dropped) continue
    const now = await repair.current(key)
    if (op.value === undefined) {
      if (now !== undefined) repair.redelivered++
      continue
    }
    const entry = decodeEntry(key, op.value)
    const identity = identifyValue(op.value)
    if (typeof entry !== "string" && typeof identity === "object" && identity.id !== undefined) {
      if (now === undefined || !now.equals(op.value)) await repair.restore(key, op.value)
      continue
    }
    if (now === undefined && !repair.lost.has(key)) {
      repair.lost.set(key, {
        id: key.slice(2),
        state: key.startsWith(DEAD) ? "dead" : "pending",
        reason:
          typeof entry === "string"
            ? `its write was in a damaged log record, and its value there is damaged too (${entry})`
            : "its write was in a damaged log record, in a format that does not let its id be checked",
      })
    }
  }
}

/** The key a value of format 2 belongs under (it carries its kind and id). */
function keyNamedBy(value: Buffer | undefined): string | undefined {
  const identity = value && identifyValue(value)
  return typeof identity === "object" && identity.id !== undefined
    ? identity.prefix + identity.id
    : undefined
}
