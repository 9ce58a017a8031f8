/**
 * `LevelJournal.repair()`: repairs a damaged journal in place and reports every entry it could
 * not keep.
 *
 * Before LevelDB touches anything, it reads the logs (what LevelDB will drop of them, and what
 * can still be read of that) and every table file (LevelDB checks neither block checksums nor
 * key order, and aborts the process when it copies a table whose keys are out of order, as its
 * compactions and its own repair do). A damaged table is moved aside, into `damaged-<time>/` in
 * the journal's directory, LevelDB's repair rebuilds the database without it, and the newest
 * versions it held go back in. Then every key and value is checked against each other: a value
 * carries its id and kind under its own checksum, so a damaged key is put back from it, and a
 * write dropped from the log whose values pass their checksums is written again. What cannot
 * be checked is moved aside under `q:` keys. Last, it compares the counters the journal stored
 * last (in its newest readable state record, which a dropped log record may still hold) with
 * what is left, so that entries lost without a readable id are counted too.
 */
import { PirateError } from "../errors.js"
import {
  assertNotHeld,
  inspectDir,
  moveAside,
  notAJournal,
  openExisting,
  openOrRepair,
  runLevelRepair,
  type Db,
} from "./level-db.js"
import { levelCode, openFailure } from "./level-errors.js"
import { checkTables, sequences, type TableCheck } from "./level-repair-tables.js"
import {
  META,
  QUARANTINE,
  addKey,
  decodeEntry,
  parseDedupeIndexKey,
  parseDedupeKey,
  parseIndexKey,
  decodeMeta,
  encodeMeta,
  identifyValue,
  isQuarantineKey,
  keyHash,
  type Counters,
} from "./level-format.js"
import {
  BATCH,
  acksKeyOf,
  batchValueKey,
  checkBatchValue,
  decodeAcks,
  parseBatchKey,
  popcount,
} from "./level-batch.js"
import { readLogHistory, type LogHistory } from "./level-log.js"
import {
  Repair,
  fits,
  isJournalKey,
  keyNamedBy,
  linesCount,
  stateOf,
  type LevelJournalRepairReport,
  type LostEntry,
  type Source,
} from "./level-repair-state.js"

export type { LevelJournalRepairReport, LostEntry } from "./level-repair-state.js"
import { type TableEntry } from "./level-table.js"
import {
  decodePointer,
  encodeSegmentRecord,
  inlineValue,
  isPointer,
  parseSegmentKey,
  segmentKey,
  SEGMENT,
  type SegmentRecord,
} from "./level-values.js"
import {
  examineRecord,
  forgetRecord,
  rebuildDedupeIndex,
  rebuildIndex,
} from "./level-repair-index.js"

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
  const tables = await checkTables(dir)
  let levelRepaired = false
  let movedAside: string[] = []
  let db: Db
  if (tables.damaged.length > 0) {
    // Never let LevelDB copy a damaged table (see the top); it is kept aside as evidence.
    await assertNotHeld(dir)
    movedAside = await moveAside(
      dir,
      tables.damaged.map((t) => t.name),
    )
    await runLevelRepair(dir)
    levelRepaired = true
    db = await openExisting(dir)
  } else {
    db = await openOrRepair(dir, () => (levelRepaired = true))
  }
  try {
    let repair: Repair
    try {
      repair = await scan(db, dir)
    } catch (err) {
      // LevelDB could not read its database: its repair keeps what it can read.
      if (levelRepaired || !isCorruption(err)) throw openFailure(dir, err)
      await db.close()
      await runLevelRepair(dir)
      levelRepaired = true
      db = await openExisting(dir)
      repair = await scan(db, dir).catch((err2: unknown) => {
        throw openFailure(dir, err2)
      })
    }
    await putBackTables(repair, dir, tables)
    const stored = await storedMeta(db, history, repair.tableMeta)
    await replayDropped(repair, history)
    await rebuildSegments(repair)
    await rebuildIndex(repair)
    await rebuildDedupeIndex(repair)
    repair.seeId(stored?.lastId)
    const counters: Counters = {
      pending: repair.pending,
      dead: repair.dead,
      scheduled: repair.scheduled,
      dedupe: repair.dedupe,
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
    const warnings: string[] = [...repair.notes]
    let unidentified = 0
    if (stored === undefined) {
      if (levelRepaired || history.droppedBytes > 0) {
        warnings.push(
          "the journal's counters could not be read, so entries dropped without a trace cannot be counted",
        )
      }
    } else {
      const gap =
        stored.pending +
        stored.dead +
        stored.scheduled -
        (repair.pending + repair.dead + repair.scheduled) +
        repair.redelivered
      unidentified = Math.max(0, gap - linesCount(lostEntries))
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
      scheduled: repair.scheduled,
      before: stored && { pending: stored.pending, dead: stored.dead, scheduled: stored.scheduled },
      lost: linesCount(lostEntries) + unidentified,
      lostEntries,
      recovered: repair.recovered,
      redelivered: repair.redelivered,
      quarantined: repair.quarantined,
      droppedLogBytes: history.droppedBytes,
      damage: [...history.problems, ...tables.damaged.flatMap((t) => t.problems)],
      movedAside,
      levelRepaired,
      warnings,
    }
  } finally {
    await db.close()
  }
}

function isCorruption(err: unknown): boolean {
  return levelCode(err) === "LEVEL_CORRUPTION" || /Corruption/.test(String(err))
}

// ---------------------------------------------------------------------------------------------
// the table files (read in level-repair-tables.ts)

/**
 * Puts back what the damaged tables held: for each key, their newest version, unless a sound
 * table holds a newer one. A put goes back when its value checks out (under the key it names);
 * a deletion is made again, so that an older version in a sound table does not come back.
 */
async function putBackTables(repair: Repair, dir: string, tables: TableCheck): Promise<void> {
  const newest = new Map<string, TableEntry>()
  for (const table of tables.damaged) {
    for (const e of table.entries) {
      const known = newest.get(e.key)
      if (known === undefined || known.sequence < e.sequence) newest.set(e.key, e)
    }
  }
  if (newest.size === 0) return
  const targets = new Map<string, string>()
  for (const [key, e] of newest) targets.set(key, keyNamedBy(e.value, dir) ?? key)
  const oldest = Math.min(...[...newest.values()].map((e) => e.sequence))
  const live = await sequences(dir, tables.sound, new Set(targets.values()), oldest)
  const moves: Move[] = []
  for (const [key, e] of newest) {
    const target = targets.get(key) ?? key
    if ((live.get(target) ?? -1) > e.sequence) continue // a newer version is in a sound table
    if (key === META) {
      repair.tableMeta = e.value
      continue
    }
    if (e.value === undefined) {
      if (isJournalKey(key) && (await repair.current(key)) !== undefined) await repair.remove(key)
      else if (parseDedupeKey(key) !== undefined) await forgetRecord(repair, key)
      continue
    }
    await examine(repair, key, e.value, "table", moves)
  }
  await applyMoves(repair, moves)
}

// ---------------------------------------------------------------------------------------------
// entries

/** A key to put back under the key its value names. */
interface Move {
  from: string
  to: string
  value: Buffer
  id: string
  /** True when the value is the newest version of `to` (from a damaged table). */
  newest: boolean
}

/**
 * Reads every entry through LevelDB: counts the good ones, moves damaged ones aside, and puts
 * back entries whose key is damaged (under the key their value names).
 */
async function scan(db: Db, dir: string): Promise<Repair> {
  const repair = new Repair(db, dir)
  const moves: Move[] = []
  const it = db.iterator()
  try {
    for (;;) {
      const rows = await it.nextv(1_000)
      if (rows.length === 0) break
      for (const [key, value] of rows) await examine(repair, key, value, "db", moves)
    }
  } finally {
    await it.close()
  }
  await applyMoves(repair, moves)
  await dropOrphanBitmaps(repair)
  return repair
}

/**
 * A bitmap whose batch is gone (moved aside, or lost) has nothing to mark: it goes too. A batch
 * whose bitmap was moved aside is pending whole again: its entries that had been acked or moved
 * out will be delivered again, which `notes` says.
 */
async function dropOrphanBitmaps(repair: Repair): Promise<void> {
  const keys = await repair.db.keys({ gte: "a:", lt: "b;" }).all()
  for (const key of new Set([...keys, ...repair.changes.keys()])) {
    const name = parseBatchKey(key)
    if (name === undefined) continue
    if (key.startsWith(BATCH)) {
      const acks = acksKeyOf(key)
      if ((await repair.current(key)) !== undefined && repair.changes.has("q:" + acks)) {
        repair.notes.push(
          `the bitmap of the batch ${name.first} … ${name.last} was damaged: those of its ${name.count} entries that had been acked will be delivered again`,
        )
      }
      continue
    }
    const value = await repair.current(key)
    if (value === undefined) continue
    if ((await repair.current(BATCH + key.slice(2))) === undefined) await repair.remove(key)
  }
}

/** A damaged key goes back to the key its value names, unless a good entry is there already. */
async function applyMoves(repair: Repair, moves: Move[]): Promise<void> {
  for (const move of moves) {
    repair.seeId(move.id)
    if (!move.newest && (await repair.current(move.to)) !== undefined) {
      repair.quarantine(move.from, move.value, undefined) // a duplicate
      continue
    }
    repair.expectedSumDelta += keyHash(move.to)
    if (!repair.changes.has(move.from)) repair.changes.set(move.from, undefined)
    await repair.restore(move.to, move.value)
  }
}

/**
 * Sorts one record out: a good entry is counted (or, from a damaged table, written again); one
 * whose value names another key is to move there; the rest is moved aside, and lost unless an
 * older version of it is left.
 */
async function examine(
  repair: Repair,
  key: string,
  value: Buffer,
  source: Source,
  moves: Move[],
): Promise<void> {
  if (key === META || isQuarantineKey(key)) return
  if (parseIndexKey(key) !== undefined) {
    // Counted with the keys, and made to agree with the scheduled entries left (see rebuildIndex).
    if (source === "db") repair.foundSum = addKey(repair.foundSum, key)
    return
  }
  if (parseSegmentKey(key) !== undefined) {
    // Counted with the keys, and written again from the batches left (see rebuildSegments).
    if (source === "db") repair.foundSum = addKey(repair.foundSum, key)
    return
  }
  if (parseDedupeIndexKey(key) !== undefined) {
    // Counted with the keys, and made to agree with the send ids left (see rebuildDedupeIndex).
    if (source === "db") repair.foundSum = addKey(repair.foundSum, key)
    return
  }
  if (parseDedupeKey(key) !== undefined) {
    await examineRecord(repair, key, value, source)
    return
  }
  const entryKey = isJournalKey(key)
  if (entryKey) {
    if (source === "db") repair.foundSum = addKey(repair.foundSum, key)
    repair.seeKey(key)
    if (fits(key, value, repair.dir)) {
      if (source === "db") repair.count(key, 1, value)
      else await repair.restore(key, value)
      return
    }
  }
  const batch = parseBatchKey(key)
  const inline = inlineValue(repair.dir, value)
  const batchNamed = typeof inline === "string" ? undefined : batchValueKey(inline)
  if (batchNamed !== undefined && batchNamed !== key) {
    const to = parseBatchKey(batchNamed) as { last: string }
    moves.push({ from: key, to: batchNamed, value, id: to.last, newest: source === "table" })
    if (entryKey && source === "db") repair.expectedSumDelta -= keyHash(key)
    return
  }
  if (batch !== undefined) {
    if (source === "table" && (await repair.current(key)) !== undefined) {
      repair.changes.set(QUARANTINE + key, value)
      repair.quarantined++
      return
    }
    const why =
      typeof inline === "string"
        ? inline
        : (checkBatchValue(key, inline) ?? "its entries cannot be read")
    const aside = `moved aside under ${JSON.stringify(QUARANTINE + key)}`
    // A damaged bitmap loses nothing: its batch is pending whole again (see dropOrphanBitmaps).
    let lost: LostEntry | undefined
    if (key.startsWith(BATCH)) {
      const bitmap = await repair.current(acksKeyOf(key))
      const acked = bitmap && decodeAcks(acksKeyOf(key), bitmap)
      const live = batch.count - (typeof acked === "object" ? popcount(acked) : 0)
      lost = {
        id: batch.first,
        state: "pending",
        count: live,
        reason: `${live} pending ${live === 1 ? "entry" : "entries"} of the batch of ${batch.count} from ${batch.first} to ${batch.last}: its value is damaged (${why}); ${aside}`,
      }
    }
    repair.quarantine(key, value, lost)
    return
  }
  const identity = identifyValue(value)
  // The id a damaged key still shows: `x:` and 16 hex digits (a damaged prefix).
  const shown = /^[^:]:([0-9a-f]{16})$/.exec(key)?.[1]
  const id = typeof identity === "string" ? undefined : (identity.id ?? shown)
  if (typeof identity !== "string" && id !== undefined && identity.prefix + id !== key) {
    moves.push({ from: key, to: identity.prefix + id, value, id, newest: source === "table" })
    if (entryKey && source === "db") repair.expectedSumDelta -= keyHash(key)
    return
  }
  if (source === "table" && entryKey && (await repair.current(key)) !== undefined) {
    // Only a newer version is damaged: the entry stays as it was before it.
    repair.changes.set(QUARANTINE + key, value)
    repair.quarantined++
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

/**
 * Writes the segment records of the value log again from the batches the repair keeps: how many
 * point into each segment and how far. A segment no batch points into loses its record, and its
 * file goes at the next open.
 */
async function rebuildSegments(repair: Repair): Promise<void> {
  const stored = await repair.db.keys({ gte: "b:", lt: "b;" }).all()
  const changed = [...repair.changes.keys()].filter((k) => k.startsWith("b:"))
  const records = new Map<number, SegmentRecord>()
  for (const key of new Set([...stored, ...changed])) {
    const value = await repair.current(key)
    if (value === undefined || !isPointer(value)) continue
    const p = decodePointer(value)
    if (typeof p === "string") continue
    const r = records.get(p.segment) ?? { live: 0, end: 0 }
    r.live++
    r.end = Math.max(r.end, p.offset + p.length)
    records.set(p.segment, r)
  }
  for (const key of await repair.db.keys({ gte: SEGMENT, lt: "v;" }).all())
    if (!records.has(parseSegmentKey(key) ?? 0)) repair.changes.set(key, undefined)
  for (const [segment, r] of records) {
    const key = segmentKey(segment)
    repair.changes.set(key, encodeSegmentRecord(segment, r))
    repair.keySum = addKey(repair.keySum, key)
  }
}

// ---------------------------------------------------------------------------------------------
// the logs

/**
 * The counters before the repair: the newest state record in the logs (which may be in a record
 * LevelDB dropped), else the one of a damaged table when it is newer, else the database's.
 */
async function storedMeta(
  db: Db,
  history: LogHistory,
  fromTable: Buffer | undefined,
): Promise<(Omit<Counters, "keySum"> & { keySum?: number }) | undefined> {
  for (let i = history.ops.length - 1; i >= 0; i--) {
    const op = history.ops[i]
    if (op?.key !== META || op.value === undefined) continue
    const meta = decodeMeta(op.value)
    if (typeof meta !== "string") return meta
  }
  const raw: Buffer | undefined = fromTable ?? (await db.get(META).catch(() => undefined))
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
    const named = op.dropped ? keyNamedBy(op.value, repair.dir) : undefined
    const key = named ?? (isJournalKey(op.key) ? op.key : undefined)
    if (key === undefined) continue
    repair.seeKey(key)
    last.set(key, op)
  }
  for (const [key, op] of last) {
    if (!op.dropped) continue
    const now = await repair.current(key)
    if (op.value === undefined) {
      if (now !== undefined) repair.redelivered++
      continue
    }
    if (keyNamedBy(op.value, repair.dir) === key && fits(key, op.value, repair.dir)) {
      if (now === undefined || !now.equals(op.value)) await repair.restore(key, op.value)
      continue
    }
    if (now === undefined && !repair.lost.has(key) && parseBatchKey(key) === undefined) {
      const entry = decodeEntry(key, op.value)
      repair.lost.set(key, {
        id: key.slice(2),
        state: stateOf(key.slice(0, 2)),
        reason:
          typeof entry === "string"
            ? `its write was in a damaged log record, and its value there is damaged too (${entry})`
            : "its write was in a damaged log record, in a format that does not let its id be checked",
      })
    }
  }
}
