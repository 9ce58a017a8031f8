/**
 * The LevelDB database under a journal: the options it is opened with, the checks of its
 * directory, the state record, and the scan of its keys that an open checks the counters with.
 */
import { mkdir, readFile, readdir, rename, stat } from "node:fs/promises"
import { join } from "node:path"
import { Level } from "level"
import { PirateError, errorCode, errorMessage } from "../errors.js"
import { howToRecover, levelFailure, openFailure } from "./level-errors.js"
import { checkTableIndex, liveTables } from "./level-table.js"
import {
  FORMAT,
  META,
  PENDING,
  decodeMeta,
  encodeMeta,
  INDEX_KEY_LENGTH,
  isEntryKey,
  isQuarantineKey,
  parseDedupeIndexKey,
  parseDedupeKey,
  parseIndexKey,
  keyHash,
  maxId,
  type Counters,
  type Meta,
} from "./level-format.js"
import { BATCH, BATCH_KEY_LENGTH, parseBatchKey } from "./level-batch.js"
import type { BatchStore } from "./level-batch-store.js"
import { verifyLogs } from "./level-log.js"
import { SEGMENT, parseSegmentKey, type ValueLog } from "./level-values.js"

export type Db = Level<string, Buffer>

/** The values of `keys`, undefined for a missing key (which level's types leave out). */
export async function getMany(db: Db, keys: string[]): Promise<(Buffer | undefined)[]> {
  return db.getMany(keys)
}

/**
 * Which of `keys` exist, by point reads. Not `db.hasMany()`: classic-level answers that with an
 * iterator seek per key, and a seek steps over every deleted key LevelDB has not compacted away
 * yet until it finds a live one; after a few thousand deletions in a row (a queue's acks) each
 * look-up cost 100 µs or more. A point read stops at the first version of its key, deleted or not.
 */
export async function hasMany(db: Db, keys: string[]): Promise<boolean[]> {
  if (keys.length === 0) return []
  const values = await db.getMany(keys)
  return values.map((v) => v !== undefined)
}

// LevelDB maps the table files it has open into memory (mmap), so the pages of them it has read
// count in the process's RSS. What bounds that is the number of tables open at once times their
// size: LevelDB keeps up to maxOpenFiles − 10 tables open (it raises maxOpenFiles to at least 74),
// compaction cuts tables at maxFileSize, and a flushed memtable (writeBufferSize) makes one table.
// A sender restarted on a million pending entries peaked at ~460 MB RSS with LevelDB's defaults
// (1000 files, 2 MiB tables, 4 MiB memtable), ~205 MB with 64 files, and 140–180 MB with the
// values below, at the same write throughput (bench/journal.ts, docs/bench-journal.md).
export const OPEN_OPTIONS = {
  keyEncoding: "utf8",
  valueEncoding: "buffer",
  maxOpenFiles: 64,
  maxFileSize: 1024 * 1024,
  writeBufferSize: 2 * 1024 * 1024,
} as const

/** What a directory holds, as far as LevelDB is concerned. */
export async function inspectDir(
  dir: string,
): Promise<{ current: boolean; data: string[]; foreign: string[] }> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    throw new PirateError(
      "PIRATE_JOURNAL_IO",
      `cannot read the journal directory ${dir}: ${errorMessage(err)}; check the path and its permissions`,
      { cause: err },
    )
  }
  return {
    current: names.includes("CURRENT"),
    data: names.filter((n) => /^\d+\.(log|ldb|sst)$/.test(n)),
    foreign: names.filter(
      (n) =>
        !/^(CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(log|ldb|sst|dbtmp)|SENDER_ID(\.tmp)?|damaged-.+|values)$/.test(
          n,
        ),
    ),
  }
}

export function notAJournal(dir: string, foreign: string[]): PirateError {
  const some = foreign.slice(0, 3).join(", ") + (foreign.length > 3 ? ", …" : "")
  return new PirateError(
    "PIRATE_JOURNAL_CORRUPT",
    `${dir} is not a journal directory (it holds ${some}); give the journal a new or empty directory`,
  )
}

/**
 * Refuses a directory that is not a journal: LevelDB would create a fresh database in it, and when
 * only its CURRENT file is lost it would even delete the old tables as obsolete.
 */
export async function assertJournalDir(dir: string): Promise<void> {
  const { current, data, foreign } = await inspectDir(dir)
  if (current) return
  if (data.length > 0) {
    throw new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${dir} is damaged (its CURRENT file is missing but ${data.slice(0, 3).join(", ")}${data.length > 3 ? ", …" : ""} remain); ${howToRecover(dir)}`,
    )
  }
  if (foreign.length > 0) throw notAJournal(dir, foreign)
}

/**
 * Reads the state record: undefined when there is none (a new journal, or one written before
 * there were counters); format 1 comes without a key sum.
 *
 * @throws PirateError `PIRATE_JOURNAL_CORRUPT` when it is damaged or of a newer format
 */
export async function readMeta(
  db: Db,
  dir: string,
): Promise<(Omit<Meta, "keySum"> & { keySum?: number }) | undefined> {
  let raw: Buffer | undefined
  try {
    raw = await db.get(META) // level's types leave out the undefined of a missing key
  } catch (err) {
    throw openFailure(dir, err)
  }
  if (raw === undefined) return undefined
  const meta = decodeMeta(raw)
  if (typeof meta === "string") {
    throw new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${dir} is damaged (its state record "${META}": ${meta}); ${howToRecover(dir)}`,
    )
  }
  if (meta.v > FORMAT) {
    throw new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${dir} has format ${meta.v}, and this version of zeromq-pirate reads formats 1 to ${FORMAT}; use the version that wrote it`,
    )
  }
  return meta
}

/** What a scan of every key found. */
export interface KeyScan {
  /** `p:` keys; the caller adds the pending entries of the batches before `checkKeys()`. */
  pending: number
  dead: number
  /** `s:` keys. */
  scheduled: number
  /** `t:` keys (one per `s:` key). */
  indexed: number
  /** `k:` keys (send ids). */
  dedupe: number
  /** `K:` keys (one per acked send id). */
  dedupeIndexed: number
  /** See `Counters.keySum`. */
  keySum: number
  /** The greatest id among the `p:`, `d:` and `s:` keys and the batches. */
  lastId: string | undefined
  /** The `b:` keys, in key order within each scanned range. */
  batches: string[]
  /** The `a:` keys. */
  acks: string[]
  /** The `v:` keys (segments of the value log). */
  segments: string[]
  /** Keys of a repair's `q:` prefix. */
  quarantined: number
  /** How many keys have no shape the journal writes, and the first few of them. */
  strange: number
  examples: string[]
}

/**
 * Reads every key (not the values) and counts them, as the counters must: with a million entries
 * this takes about a second of CPU (docs/journal.md, "Figures"). A large journal is read in
 * several key ranges at once: LevelDB's side of an iteration runs on libuv's thread pool, so the
 * ranges proceed in parallel. However a damaged table makes LevelDB skip keys, a set of keys
 * other than the stored one shows in the count or the key sum, whichever ranges it is read in.
 *
 * @param expected - how many entries the counters say, to choose the number of ranges
 */
export async function scanKeys(db: Db, dir: string, expected = 0): Promise<KeyScan> {
  const bounds = expected >= SPLIT_ABOVE ? await splitPoints(db, dir, RANGES) : []
  const ranges = [undefined, ...bounds].map((gte, i) => ({ gte, lt: bounds[i] }))
  const scans = await Promise.all(ranges.map((range) => scanRange(db, dir, range)))
  const scan = scans.reduce((a, b) => ({
    pending: a.pending + b.pending,
    dead: a.dead + b.dead,
    scheduled: a.scheduled + b.scheduled,
    indexed: a.indexed + b.indexed,
    dedupe: a.dedupe + b.dedupe,
    dedupeIndexed: a.dedupeIndexed + b.dedupeIndexed,
    keySum: (a.keySum + b.keySum) >>> 0,
    lastId: maxId(a.lastId, b.lastId),
    quarantined: a.quarantined + b.quarantined,
    batches: a.batches.concat(b.batches),
    acks: a.acks.concat(b.acks),
    segments: a.segments.concat(b.segments),
    strange: a.strange + b.strange,
    examples: [...a.examples, ...b.examples].slice(0, 3),
  }))
  return scan
}

const SPLIT_ABOVE = 100_000
const RANGES = 4

/** Keys that cut the pending entries into `parts` ranges of ids about as wide. */
async function splitPoints(db: Db, dir: string, parts: number): Promise<string[]> {
  let ends: string[]
  try {
    const first = await db.keys({ gt: PENDING, lt: "p;", limit: 1 }).all()
    const last = await db.keys({ gt: PENDING, lt: "p;", limit: 1, reverse: true }).all()
    ends = [...first, ...last].filter(isEntryKey)
  } catch (err) {
    throw openFailure(dir, err)
  }
  if (ends.length < 2) return []
  // 16 hex digits exceed a double's precision: the first 13 are plenty to cut ranges with.
  const from = parseInt((ends[0] ?? "").slice(2, 15), 16)
  const to = parseInt((ends[1] ?? "").slice(2, 15), 16)
  const points: string[] = []
  for (let i = 1; i < parts; i++) {
    const at = Math.floor(from + ((to - from) * i) / parts)
    points.push(PENDING + at.toString(16).padStart(13, "0"))
  }
  return [...new Set(points)].filter((p, i, all) => i === 0 || p > (all[i - 1] ?? ""))
}

async function scanRange(
  db: Db,
  dir: string,
  range: { gte: string | undefined; lt: string | undefined },
): Promise<KeyScan> {
  const scan: KeyScan = {
    pending: 0,
    dead: 0,
    scheduled: 0,
    indexed: 0,
    dedupe: 0,
    dedupeIndexed: 0,
    keySum: 0,
    lastId: undefined,
    quarantined: 0,
    batches: [],
    acks: [],
    segments: [],
    strange: 0,
    examples: [],
  }
  let last = ""
  const options: { values: false; fillCache: false; gte?: string; lt?: string } = {
    values: false,
    fillCache: false,
  }
  if (range.gte !== undefined) options.gte = range.gte
  if (range.lt !== undefined) options.lt = range.lt
  const it = db.iterator(options)
  try {
    for (;;) {
      const rows = await it.nextv(10_000)
      if (rows.length === 0) break
      for (const [key] of rows) {
        if (isEntryKey(key)) {
          const p = key.charCodeAt(0)
          if (p === 0x70) scan.pending++
          else if (p === 0x64) scan.dead++
          else scan.scheduled++
          scan.keySum = (scan.keySum + keyHash(key)) >>> 0
          const id = key.slice(2)
          if (id > last) last = id
        } else if (key.length === BATCH_KEY_LENGTH && parseBatchKey(key) !== undefined) {
          scan.keySum = (scan.keySum + keyHash(key)) >>> 0
          if (key.startsWith(BATCH)) {
            scan.batches.push(key)
            const id = key.slice(18, 34)
            if (id > last) last = id
          } else scan.acks.push(key)
        } else if (key.length === INDEX_KEY_LENGTH && parseIndexKey(key) !== undefined) {
          scan.keySum = (scan.keySum + keyHash(key)) >>> 0
          scan.indexed++
        } else if (parseSegmentKey(key) !== undefined) {
          scan.keySum = (scan.keySum + keyHash(key)) >>> 0
          scan.segments.push(key)
        } else if (parseDedupeKey(key) !== undefined) {
          scan.keySum = (scan.keySum + keyHash(key)) >>> 0
          scan.dedupe++
        } else if (parseDedupeIndexKey(key) !== undefined) {
          scan.keySum = (scan.keySum + keyHash(key)) >>> 0
          scan.dedupeIndexed++
        } else if (isQuarantineKey(key)) scan.quarantined++
        else if (key !== META) {
          scan.strange++
          if (scan.examples.length < 3) scan.examples.push(key)
        }
      }
    }
  } catch (err) {
    throw openFailure(dir, err)
  } finally {
    await it.close()
  }
  if (last !== "") scan.lastId = last
  return scan
}

/**
 * Refuses a journal whose keys disagree with its counters: a key changed or lost on disk would
 * otherwise go unnoticed, its entry never read while the counters still count it.
 *
 * @param meta - the state record; undefined when there was none (nothing to check against)
 * @param hadData - whether LevelDB held data before it opened (see `holdsData`)
 * @throws PirateError `PIRATE_JOURNAL_CORRUPT`
 */
export function checkKeys(
  dir: string,
  meta: (Omit<Meta, "keySum"> & { keySum?: number }) | undefined,
  scan: KeyScan,
  hadData: boolean,
): void {
  const damaged = (what: string): PirateError =>
    new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${dir} is damaged (${what}); ${howToRecover(dir)}`,
    )
  if (scan.strange > 0) {
    const some = scan.examples.map((k) => JSON.stringify(k)).join(", ")
    if (
      meta === undefined &&
      scan.pending + scan.dead + scan.scheduled + scan.batches.length === 0
    ) {
      throw new PirateError(
        "PIRATE_JOURNAL_CORRUPT",
        `${dir} holds a LevelDB database that is not a zeromq-pirate journal (keys ${some}); give the journal another directory`,
      )
    }
    throw damaged(
      `it holds ${scan.strange} ${scan.strange === 1 ? "key" : "keys"} of no shape the journal writes: ${some}${scan.strange > scan.examples.length ? ", …" : ""}`,
    )
  }
  if (meta === undefined) {
    // Every write since there were counters stores them: data on disk, with neither counters
    // nor entries to be read, is a database LevelDB cannot read (a damaged table index reads
    // as an empty table).
    if (
      hadData &&
      scan.pending + scan.dead + scan.scheduled + scan.quarantined + scan.batches.length === 0
    ) {
      throw damaged("its state record is missing and no entry can be read, though it holds data")
    }
    return
  }
  if (scan.pending !== meta.pending || scan.dead !== meta.dead) {
    throw damaged(
      `it holds ${scan.pending} pending entries and ${scan.dead} dead letters where its counters say ${meta.pending} and ${meta.dead}`,
    )
  }
  if (scan.scheduled !== meta.scheduled || scan.indexed !== scan.scheduled) {
    throw damaged(
      `it holds ${scan.scheduled} scheduled entries and ${scan.indexed} due-time keys where its counters say ${meta.scheduled} of each`,
    )
  }
  if (scan.dedupe !== meta.dedupe || scan.dedupeIndexed > scan.dedupe) {
    throw damaged(
      `it holds ${scan.dedupe} send ids and ${scan.dedupeIndexed} acked-time keys where its counters say ${meta.dedupe} send ids, and at most as many acked-time keys`,
    )
  }
  if (meta.keySum !== undefined && scan.keySum !== meta.keySum) {
    throw damaged("its keys disagree with their checksum: a key was changed on disk")
  }
  if (scan.lastId !== undefined && (meta.lastId === undefined || scan.lastId > meta.lastId)) {
    throw damaged(`it holds id ${scan.lastId}, above the greatest id it ever stored`)
  }
}

/**
 * Refuses a journal whose tables LevelDB would misread without noticing: see `checkTableIndex`.
 * It reads a few kilobytes per table (about 2 MB with a million entries).
 */
/**
 * Checks the journal's directory and logs, opens its database and reads its counters, checking
 * them against every key at `open` (a `reopen`, after a failed write, trusts the stored ones), and
 * loads the batches into `batches`. Closes what it opened when it fails.
 */
export async function loadDatabase(
  path: string,
  doing: "open" | "reopen",
  batches: BatchStore,
  values: ValueLog,
): Promise<{ db: Db; counters: Counters }> {
  await assertJournalDir(path)
  await verifyLogs(path)
  const opening = doing === "open"
  const hadData = opening && (await holdsData(path))
  if (opening) await verifyTables(path)
  // A reopen never creates: the journal it reopens must still be there.
  const db = new Level<string, Buffer>(path, { ...OPEN_OPTIONS, createIfMissing: opening })
  try {
    await db.open()
  } catch (err) {
    throw levelFailure(path, doing, err)
  }
  try {
    const meta = await readMeta(db, path)
    if (!opening && meta?.keySum !== undefined) {
      // A write that failed may still have been kept: the batches are read again from disk.
      await batches.reload(db).catch((err: unknown) => {
        throw err instanceof PirateError ? err : levelFailure(path, doing, err)
      })
      const keys = await db.keys({ gte: SEGMENT, lt: "v;" }).all()
      const stored = keys.length > 0 ? await getMany(db, keys) : []
      values.reload(keys.map((k, i) => [k, stored[i]]))
      return { db, counters: { ...meta, keySum: meta.keySum } }
    }
    // Every key once: a key damaged or lost on disk shows here, before any of it is read.
    const scan = await scanKeys(db, path, meta ? meta.pending + meta.dead + meta.scheduled : 0)
    scan.pending += await batches.load(db, scan.batches, scan.acks)
    checkKeys(path, meta, scan, hadData)
    // After the key check: a segment file that no record names is deleted, so a record lost on
    // disk must have failed the open before.
    const records = scan.segments.length > 0 ? await getMany(db, scan.segments) : []
    await values.load(scan.segments.map((k, i) => [k, records[i]]))
    const counters: Counters = {
      pending: scan.pending,
      dead: scan.dead,
      scheduled: scan.scheduled,
      dedupe: scan.dedupe,
      keySum: scan.keySum,
      lastId: meta?.lastId ?? scan.lastId,
    }
    // A new journal, one written by the previous release (no key sum) or without counters.
    if (meta?.keySum === undefined) {
      await db.put(META, encodeMeta(counters), { sync: true }).catch((err: unknown) => {
        throw levelFailure(path, doing, err)
      })
    }
    return { db, counters }
  } catch (err) {
    await db.close().catch(() => undefined)
    throw err
  }
}

export async function verifyTables(dir: string): Promise<void> {
  const live = await liveTables(dir)
  for (const name of (await readdir(dir)).filter((n) => /^\d+\.(ldb|sst)$/.test(n))) {
    const size = live?.get(parseInt(name, 10))
    if (live !== undefined && size === undefined) continue // left over: LevelDB deletes it
    const problem = await checkTableIndex(join(dir, name), size).catch((err: unknown) =>
      errorCode(err) === "ENOENT" ? undefined : errorMessage(err),
    )
    if (problem !== undefined) {
      throw new PirateError(
        "PIRATE_JOURNAL_CORRUPT",
        `the journal in ${dir} is damaged (${name}: ${problem}); LevelDB would not notice and could skip entries, so it was not opened; ${howToRecover(dir)}`,
      )
    }
  }
}

/** True when LevelDB holds data in `dir` (a table, or a log with something in it). */
export async function holdsData(dir: string): Promise<boolean> {
  for (const name of (await readdir(dir)).filter((n) => /^\d+\.(ldb|sst|log)$/.test(n))) {
    if (!name.endsWith(".log")) return true
    if ((await stat(join(dir, name)).catch(() => undefined))?.size) return true
  }
  return false
}

// ---------------------------------------------------------------------------------------------
// opening a damaged journal for repair

/**
 * Opens the database without creating it (with CURRENT lost, LevelDB would start a new database
 * and delete the tables); runs LevelDB's repair when it will not open. LevelDB takes its LOCK
 * before it reads anything, so this open also tells whether a sender holds the journal; its
 * RepairDB does not lock, so it must only run after a failed open.
 */
export async function openOrRepair(dir: string, repaired: () => void): Promise<Db> {
  const db = new Level<string, Buffer>(dir, { ...OPEN_OPTIONS, createIfMissing: false })
  try {
    await db.open()
    return db
  } catch (err) {
    const failure = openFailure(dir, err)
    if (failure.code === "PIRATE_JOURNAL_LOCKED") throw failure
    await runLevelRepair(dir)
    repaired()
    return openExisting(dir)
  }
}

/**
 * Refuses a journal that a process holds (LevelDB's LOCK), before files are moved. Linux tells
 * without opening the database (/proc/locks lists the inode of every lock); elsewhere an open
 * tells, and LevelDB may then start a compaction (one that meets the damaged table aborts).
 */
export async function assertNotHeld(dir: string): Promise<void> {
  const locks = await readFile("/proc/locks", "utf8").catch(() => undefined)
  if (locks === undefined) {
    await (await openExisting(dir)).close()
    return
  }
  const ino = await stat(join(dir, "LOCK")).then(
    (s) => s.ino,
    () => undefined,
  )
  if (ino !== undefined && locks.split("\n").some((l) => l.includes(`:${ino} `))) {
    throw levelFailure(dir, "open", Object.assign(new Error("locked"), { code: "LEVEL_LOCKED" }))
  }
}

export async function openExisting(dir: string): Promise<Db> {
  const db = new Level<string, Buffer>(dir, { ...OPEN_OPTIONS, createIfMissing: false })
  try {
    await db.open()
  } catch (err) {
    throw openFailure(dir, err)
  }
  return db
}

export async function runLevelRepair(dir: string): Promise<void> {
  await (Level as unknown as { repair(location: string): Promise<void> }).repair(dir)
}

/** Moves files into a new `damaged-<time>` directory of `dir`; returns their new paths there. */
export async function moveAside(dir: string, names: string[]): Promise<string[]> {
  const aside = `damaged-${new Date().toISOString().replace(/[:.]/g, "-")}`
  await mkdir(join(dir, aside))
  for (const name of names) await rename(join(dir, name), join(dir, aside, name))
  return names.map((name) => `${aside}/${name}`)
}
