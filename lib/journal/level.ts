import { mkdir, readFile, readdir, stat } from "node:fs/promises"
import { join, resolve } from "node:path"
import { crc32 } from "node:zlib"
import { Level } from "level"
import { debug } from "../debug.js"
import { PirateError, closedError, errorMessage } from "../errors.js"
import { assertNonNegativeInt, describe } from "../validate.js"
import type { DeadLetter, Journal, JournalEntry, JournalStats, JournalUpdate } from "./types.js"

/** Options of {@link LevelJournal}. */
export interface LevelJournalOptions {
  /** Directory of the LevelDB database; created (recursively) when missing. */
  path: string
}

/** What {@link LevelJournal.repair} did. */
export interface LevelJournalRepairReport {
  /** Pending entries after the repair. */
  pending: number
  /** Dead letters after the repair. */
  dead: number
  /** Entries whose value failed its checksum, moved aside under the `q:` prefix (kept, not read). */
  quarantined: number
  /** True when LevelDB's own repair had to run (the database would not open). */
  levelRepaired: boolean
}

// On-disk layout (format 1). Keys are utf8 strings; ids are 16 hex digits, so every range below
// sorts in id order and ends just before the next prefix character (":" + 1 = ";").
const PENDING = "p:"
const DEAD = "d:"
const QUARANTINE = "q:"
const META = "m:state"
const FORMAT = 1

// Value: [kind u8][crc32 u32 of the rest][flags u8][attempts u32][enqueuedAt f64]
//        [notBefore f64]? [deadAt f64]? [errorLength u32, error utf8]? [payload bytes…]
// All little-endian. LevelDB only checks its block checksums when asked to (classic-level never
// asks), so the per-value crc32 is what catches a damaged value instead of returning it.
const KIND_PENDING = 1
const KIND_DEAD = 2
const FLAG_ERROR = 1
const FLAG_NOT_BEFORE = 2
const FIXED = 18

interface Meta {
  v: number
  lastId: string | null
  pending: number
  dead: number
}

/** What every write batch stores under the meta key, besides the format version. */
interface Counters {
  pending: number
  dead: number
  lastId: string | undefined
}

type Db = Level<string, Buffer>
type Op = { type: "put"; key: string; value: Buffer } | { type: "del"; key: string }
type State = "new" | "opening" | "open" | "closing" | "closed"

/**
 * A journal in a LevelDB database: entries survive the process, and with `sync: true` the machine.
 *
 * One process (and one `LevelJournal`) holds a journal at a time. Every write is one atomic LevelDB
 * batch that also carries the counters and the greatest id ever stored, so `stats()` and `lastId()`
 * need no scan when the journal opens, even with a million pending entries.
 *
 * A write that fails rejects with `PIRATE_JOURNAL_FULL` (the disk is full) or `PIRATE_JOURNAL_IO`
 * and changes nothing that a later call sees; the journal reopens LevelDB before its next write,
 * so writes succeed again once the cause is gone, without a restart. A rejected write may be
 * retried as it was (when a synced write fails at the sync, it may have been kept after all).
 *
 * @example
 * ```ts
 * const journal = new LevelJournal("./journal")
 * await journal.open()
 * await journal.append([{ id, payload, attempts: 0, enqueuedAt: Date.now() }], { sync: false })
 * const page = await journal.pending({ limit: 1000 })
 * await journal.close()
 * ```
 */
export class LevelJournal implements Journal {
  readonly persistent = true
  /** Absolute path of the journal's directory. */
  readonly path: string
  #state: State = "new"
  #db: Db | undefined
  // Set when a write failed. LevelDB may then hold a torn record at the end of its log (a record
  // written after it would sit behind the tear, where the next open stops reading or this
  // journal's log check refuses to open), or a sticky background error (a table write that hit a
  // full disk fails every later write, even once there is room). So the next write first closes
  // the database and opens it again: LevelDB then recovers the log into a table, dropping the
  // torn record as a crash would, and starts a fresh log.
  #stale = false
  #reopening: Promise<Db> | undefined
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  // Writes run one at a time: each reads what it must (existence, old values) and writes the
  // counters in its own batch, so the counters on disk always match the entries.
  #tail: Promise<unknown> = Promise.resolve()
  readonly #reads = new Set<Promise<unknown>>()
  #pending = 0
  #dead = 0
  #lastId: string | undefined

  /**
   * Validates the options; does no I/O (call `open()`).
   *
   * @param options - the directory, or {@link LevelJournalOptions}
   * @throws TypeError when the path is not a non-empty string
   */
  constructor(options: string | LevelJournalOptions) {
    const path: unknown = typeof options === "object" && options !== null ? options.path : options
    if (typeof path !== "string" || path === "") {
      throw new TypeError(`'path' must be a non-empty string, got ${describe(path)}`)
    }
    this.path = resolve(path)
  }

  /** `"new"` until `open()`, then `"opening"`, `"open"`, `"closing"`, `"closed"`. */
  get status(): State {
    return this.#state
  }

  /**
   * Opens (creating when missing) the journal. Idempotent; a failed open may be retried.
   *
   * @throws PirateError `PIRATE_JOURNAL_LOCKED` when another process or `LevelJournal` holds it;
   *   `PIRATE_JOURNAL_CORRUPT` when it is damaged or cannot be read; `PIRATE_JOURNAL_FULL` when its
   *   disk is full; `PIRATE_JOURNAL_IO` for another I/O failure; `PIRATE_CLOSED` after `close()`.
   */
  open(): Promise<void> {
    if (this.#closing) return Promise.reject(closedError("the journal"))
    return (this.#opening ??= this.#open())
  }

  /** Closes the journal once the writes in progress are done. Idempotent. */
  close(): Promise<void> {
    return (this.#closing ??= this.#close())
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async append(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void> {
    const sync = options.sync
    if (typeof sync !== "boolean")
      throw new TypeError(`'sync' must be a boolean, got ${describe(sync)}`)
    const byId = new Map<string, Buffer>()
    for (const e of entries) byId.set(checkId(e.id), encodeEntry(KIND_PENDING, e, undefined))
    if (byId.size === 0) return
    await this.#write(async (db) => {
      // Ids come from an IdGenerator seeded with lastId(): a new id is greater than every id ever
      // stored, so only an id at or below lastId can already exist and needs a look-up.
      let added = byId.size
      let top = this.#lastId
      const old: string[] = []
      for (const id of byId.keys()) {
        if (this.#lastId !== undefined && id <= this.#lastId) old.push(PENDING + id)
        if (top === undefined || id > top) top = id
      }
      if (old.length > 0) for (const found of await db.hasMany(old)) if (found) added--
      const ops: Op[] = []
      for (const [id, value] of byId) ops.push({ type: "put", key: PENDING + id, value })
      await this.#commit(
        db,
        ops,
        { pending: this.#pending + added, dead: this.#dead, lastId: top },
        sync,
      )
    })
  }

  async remove(ids: readonly string[]): Promise<void> {
    const keys = unique(ids).map((id) => PENDING + id)
    if (keys.length === 0) return
    await this.#write(async (db) => {
      const ops: Op[] = []
      const found = await db.hasMany(keys)
      keys.forEach((key, i) => found[i] && ops.push({ type: "del", key }))
      if (ops.length === 0) return
      const next = { pending: this.#pending - ops.length, dead: this.#dead, lastId: this.#lastId }
      await this.#commit(db, ops, next, false)
    })
  }

  async update(updates: readonly JournalUpdate[]): Promise<void> {
    const byId = new Map<string, JournalUpdate>()
    for (const u of updates) {
      checkId(u.id)
      assertNonNegativeInt("attempts", u.attempts)
      byId.set(u.id, u)
    }
    if (byId.size === 0) return
    await this.#write(async (db) => {
      const keys = [...byId.keys()].map((id) => PENDING + id)
      const values = await getMany(db, keys)
      const ops: Op[] = []
      for (const [i, u] of [...byId.values()].entries()) {
        const key = keys[i] as string
        const value = values[i]
        if (value === undefined) continue // acked meanwhile: never resurrect it
        const old = this.#decode(key, value, KIND_PENDING)
        const next: JournalEntry = {
          id: u.id,
          payload: old.payload,
          attempts: u.attempts,
          enqueuedAt: old.enqueuedAt,
        }
        if (u.lastError !== undefined) next.lastError = u.lastError
        if (u.notBefore !== undefined) next.notBefore = u.notBefore
        ops.push({ type: "put", key, value: encodeEntry(KIND_PENDING, next, undefined) })
      }
      if (ops.length === 0) return
      await this.#commit(db, ops, this.#meta(), false)
    })
  }

  async bury(letters: readonly DeadLetter[]): Promise<void> {
    const byId = new Map<string, Buffer>()
    for (const d of letters) {
      if (typeof d.lastError !== "string") {
        throw new TypeError(`'lastError' must be a string, got ${describe(d.lastError)}`)
      }
      if (typeof d.deadAt !== "number") {
        throw new TypeError(`'deadAt' must be a number, got ${describe(d.deadAt)}`)
      }
      byId.set(checkId(d.id), encodeEntry(KIND_DEAD, d, d.deadAt))
    }
    if (byId.size === 0) return
    await this.#write(async (db) => {
      const ids = [...byId.keys()]
      const found = await db.hasMany([
        ...ids.map((id) => PENDING + id),
        ...ids.map((id) => DEAD + id),
      ])
      const ops: Op[] = []
      let pending = this.#pending
      let dead = this.#dead
      let top = this.#lastId
      ids.forEach((id, i) => {
        if (found[i]) {
          ops.push({ type: "del", key: PENDING + id })
          pending--
        }
        if (!found[ids.length + i]) dead++
        ops.push({ type: "put", key: DEAD + id, value: byId.get(id) as Buffer })
        if (top === undefined || id > top) top = id
      })
      await this.#commit(db, ops, { pending, dead, lastId: top }, false)
    })
  }

  async pending(options: {
    after?: string
    until?: string
    limit: number
  }): Promise<JournalEntry[]> {
    const limit = checkLimit(options.limit)
    if (limit === 0) return []
    const range: { gt: string; lt?: string; lte?: string; limit: number } = {
      gt: PENDING + (options.after ?? ""),
      limit: limit === Infinity ? -1 : limit,
    }
    if (options.until === undefined) range.lt = "p;"
    else range.lte = PENDING + options.until
    const rows = await this.#read((db) => db.iterator(range).all())
    return rows.map(([key, value]) => this.#decode(key, value, KIND_PENDING))
  }

  async dead(options: { after?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    const limit = checkLimit(options.limit ?? Infinity)
    if (limit === 0) return []
    const range = {
      gt: DEAD + (options.after ?? ""),
      lt: "d;",
      limit: limit === Infinity ? -1 : limit,
    }
    const rows = await this.#read((db) => db.iterator(range).all())
    return rows.map(([key, value]) => this.#decode(key, value, KIND_DEAD) as DeadLetter)
  }

  async replay(ids: readonly string[]): Promise<JournalEntry[]> {
    const wanted = unique(ids).sort() // code-unit order, as LevelDB's keys and `<` sort
    if (wanted.length === 0) return []
    return this.#write(async (db) => {
      const values = await getMany(
        db,
        wanted.map((id) => DEAD + id),
      )
      // An id can be pending and dead at once (appended again after it was buried): replaying
      // it replaces the pending entry, which must not count it twice.
      const pending = await db.hasMany(wanted.map((id) => PENDING + id))
      const ops: Op[] = []
      const moved: JournalEntry[] = []
      let added = 0
      wanted.forEach((id, i) => {
        const value = values[i]
        if (value === undefined) return
        if (!pending[i]) added++
        const d = this.#decode(DEAD + id, value, KIND_DEAD)
        const entry = { id, payload: d.payload, attempts: 0, enqueuedAt: d.enqueuedAt }
        ops.push({ type: "del", key: DEAD + id })
        ops.push({
          type: "put",
          key: PENDING + id,
          value: encodeEntry(KIND_PENDING, entry, undefined),
        })
        moved.push(entry)
      })
      if (moved.length === 0) return moved
      const next = {
        pending: this.#pending + added,
        dead: this.#dead - moved.length,
        lastId: this.#lastId,
      }
      await this.#commit(db, ops, next, false)
      return moved
    })
  }

  async purgeDead(ids: readonly string[]): Promise<number> {
    const keys = unique(ids).map((id) => DEAD + id)
    if (keys.length === 0) return 0
    return this.#write(async (db) => {
      const found = await db.hasMany(keys)
      const ops: Op[] = []
      keys.forEach((key, i) => found[i] && ops.push({ type: "del", key }))
      const purged = ops.length
      if (purged === 0) return 0
      const next = { pending: this.#pending, dead: this.#dead - purged, lastId: this.#lastId }
      await this.#commit(db, ops, next, false)
      return purged
    })
  }

  async lastId(): Promise<string | undefined> {
    await this.#ready()
    return this.#lastId
  }

  async stats(): Promise<JournalStats> {
    await this.#ready()
    return { pending: this.#pending, dead: this.#dead }
  }

  /**
   * Repairs a damaged journal in place: runs LevelDB's repair when the database will not open
   * (which keeps every record it can still read and drops the rest), moves entries whose value
   * fails its checksum aside under the `q:` prefix, and recounts. Copy the directory first: what
   * LevelDB drops is gone.
   *
   * @param path - the journal's directory
   * @returns counts after the repair
   * @throws PirateError `PIRATE_JOURNAL_LOCKED` when a process holds the journal;
   *   `PIRATE_NOT_FOUND` when there is no journal there; `PIRATE_JOURNAL_CORRUPT` when even a
   *   repaired database cannot be read
   */
  static async repair(path: string): Promise<LevelJournalRepairReport> {
    const dir = new LevelJournal(path).path
    const found = await inspectDir(dir).catch(() => undefined)
    if (found === undefined || (!found.current && found.data.length === 0)) {
      throw new PirateError("PIRATE_NOT_FOUND", `there is no journal in ${dir} to repair`)
    }
    if (!found.current && found.foreign.length > 0) throw notAJournal(dir, found.foreign)
    // Never create: with CURRENT lost, LevelDB would start a new database and delete the tables.
    // LevelDB takes its LOCK before it reads anything, so this open also tells whether a sender
    // holds the journal; its RepairDB does not lock, so it must only run after a failed open.
    const options = { ...OPEN_OPTIONS, createIfMissing: false }
    let levelRepaired = false
    let db: Db = new Level<string, Buffer>(dir, options)
    try {
      await db.open()
    } catch (err) {
      const failure = openFailure(dir, err)
      if (failure.code === "PIRATE_JOURNAL_LOCKED") throw failure
      await (Level as unknown as { repair(location: string): Promise<void> }).repair(dir)
      levelRepaired = true
      db = new Level<string, Buffer>(dir, options)
      try {
        await db.open()
      } catch (err2) {
        throw openFailure(dir, err2)
      }
    }
    try {
      const scan = await scanAll(db, dir, true)
      const meta = await readMeta(db, dir).catch(() => undefined)
      const lastId = maxId(scan.lastId, meta?.lastId ?? undefined)
      const ops = [...scan.ops, metaOp({ pending: scan.pending, dead: scan.dead, lastId })]
      await db.batch(ops, { sync: true })
      return {
        pending: scan.pending,
        dead: scan.dead,
        quarantined: scan.quarantined,
        levelRepaired,
      }
    } finally {
      await db.close()
    }
  }

  async #open(): Promise<void> {
    if (this.#closing) throw closedError("the journal")
    this.#state = "opening"
    try {
      await mkdir(this.path, { recursive: true }).catch((err: unknown) => {
        throw new PirateError(
          isDiskFull(err) ? "PIRATE_JOURNAL_FULL" : "PIRATE_JOURNAL_IO",
          `cannot create the journal directory ${this.path}: ${errorMessage(err)}; check the path, its permissions and the space left on its disk`,
          { cause: err },
        )
      })
      this.#db = await this.#load("open")
      if (!this.#closing) this.#state = "open"
    } catch (err) {
      this.#state = this.#closing ? "closing" : "new"
      this.#opening = undefined // a failed open may be retried (e.g. once the other sender exits)
      throw err
    }
  }

  /**
   * Checks the directory and its logs, opens the database and loads the counters from it: for
   * `open()`, and again after a failed write. Closes what it opened when it fails.
   */
  async #load(doing: "open" | "reopen"): Promise<Db> {
    await assertJournalDir(this.path)
    await verifyLogs(this.path)
    // A reopen never creates: the journal it reopens must still be there.
    const createIfMissing = doing === "open"
    const db = new Level<string, Buffer>(this.path, { ...OPEN_OPTIONS, createIfMissing })
    try {
      await db.open()
    } catch (err) {
      throw levelFailure(this.path, doing, err)
    }
    try {
      let meta = await readMeta(db, this.path)
      if (meta === undefined) {
        // A new journal, or one written without counters: count once and store them.
        const scan = await scanAll(db, this.path, false)
        meta = { v: FORMAT, lastId: scan.lastId ?? null, pending: scan.pending, dead: scan.dead }
        await db
          .batch([metaOp({ ...meta, lastId: scan.lastId })], { sync: true })
          .catch((err: unknown) => {
            throw levelFailure(this.path, doing, err)
          })
      }
      this.#pending = meta.pending
      this.#dead = meta.dead
      this.#lastId = meta.lastId ?? undefined
      return db
    } catch (err) {
      await db.close().catch(() => undefined)
      throw err
    }
  }

  /**
   * Closes the database and opens it again (see `#stale`), once for every caller that needs it
   * meanwhile. Reads in progress on the old database finish first; reads that start meanwhile
   * wait for the new one. When it fails, the journal stays without a database and the next call
   * that needs one tries again.
   */
  #reopen(): Promise<Db> {
    return (this.#reopening ??= (async () => {
      try {
        const old = this.#db
        this.#db = undefined
        if (old !== undefined) {
          debug("journal %s: reopening LevelDB after a failed write", this.path)
          await Promise.allSettled(this.#reads)
          await old.close().catch(() => undefined)
        }
        const db = await this.#load("reopen")
        this.#db = db
        this.#stale = false
        return db
      } finally {
        this.#reopening = undefined
      }
    })())
  }

  async #close(): Promise<void> {
    const opening = this.#opening
    this.#state = "closing"
    if (opening) await opening.catch(() => undefined)
    await this.#tail
    await this.#reopening?.catch(() => undefined)
    await Promise.allSettled(this.#reads)
    const db = this.#db
    this.#db = undefined
    try {
      if (db !== undefined) await db.close()
    } finally {
      this.#state = "closed"
    }
  }

  /** Waits for an open or a reopen in progress; throws unless the journal is open. */
  async #ready(): Promise<void> {
    if (this.#state === "opening" && this.#opening) await this.#opening.catch(() => undefined)
    await this.#reopening?.catch(() => undefined)
    if (this.#closing) throw closedError("the journal")
    if (this.#state !== "open") {
      throw new PirateError("PIRATE_NOT_OPEN", "the journal is not open; call open() first")
    }
  }

  /**
   * Runs one write after the previous one (see `#tail`), on a reopened database after a failed
   * write. When the journal is open it queues the write synchronously, so a `close()` called next
   * waits for it.
   */
  async #write<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    if (this.#state !== "open") await this.#ready()
    const run = this.#tail.then(async () =>
      fn(this.#db !== undefined && !this.#stale ? this.#db : await this.#reopen()),
    )
    this.#tail = run.catch(() => undefined)
    try {
      return await run
    } catch (err) {
      throw this.#operational(err, "write to")
    }
  }

  /** Runs a read on the database (a stale one serves reads well), waiting for a reopen. */
  async #read<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    for (;;) {
      const db = this.#db
      if (this.#state === "open" && db !== undefined && !this.#reopening) {
        const run = fn(db) // registered at once, so that a reopen waits for it
        this.#reads.add(run)
        try {
          return await run
        } catch (err) {
          throw this.#operational(err, "read")
        } finally {
          this.#reads.delete(run)
        }
      }
      await this.#ready()
      if (this.#db === undefined) await this.#reopen() // the last one failed: try again
    }
  }

  async #commit(db: Db, ops: Op[], next: Counters, sync: boolean): Promise<void> {
    ops.push(metaOp(next))
    // A chained batch: the array form copies every operation with the options spread into it,
    // which costs several times the write itself. Same atomic LevelDB write.
    const batch = db.batch()
    for (const op of ops) {
      if (op.type === "put") batch.put(op.key, op.value)
      else batch.del(op.key)
    }
    try {
      await batch.write({ sync })
    } catch (err) {
      this.#stale = true
      throw err
    }
    this.#pending = next.pending
    this.#dead = next.dead
    this.#lastId = next.lastId
  }

  #meta(): Counters {
    return { pending: this.#pending, dead: this.#dead, lastId: this.#lastId }
  }

  #decode(key: string, value: Buffer, kind: number): JournalEntry | DeadLetter {
    const entry = decodeEntry(key, value, kind)
    if (typeof entry === "string") throw corruptValue(this.path, key, entry)
    return entry
  }

  #operational(err: unknown, doing: "read" | "write to"): unknown {
    if (err instanceof PirateError) return err
    if (levelCode(err) === "LEVEL_DATABASE_NOT_OPEN" && this.#closing)
      return closedError("the journal")
    if (isDiskFull(err) || fromLevelDb(err)) return levelFailure(this.path, doing, err)
    return err
  }
}

// LevelDB maps the table files it has open into memory (mmap), so the pages of them it has read
// count in the process's RSS. What bounds that is the number of tables open at once times their
// size: LevelDB keeps up to maxOpenFiles − 10 tables open (it raises maxOpenFiles to at least 74),
// compaction cuts tables at maxFileSize, and a flushed memtable (writeBufferSize) makes one table.
// A sender restarted on a million pending entries peaked at ~460 MB RSS with LevelDB's defaults
// (1000 files, 2 MiB tables, 4 MiB memtable), ~205 MB with 64 files, and 140–180 MB with the
// values below, at the same write throughput (bench/journal.ts, docs/bench-journal.md).
const OPEN_OPTIONS = {
  keyEncoding: "utf8",
  valueEncoding: "buffer",
  maxOpenFiles: 64,
  maxFileSize: 1024 * 1024,
  writeBufferSize: 2 * 1024 * 1024,
} as const

function howToRecover(dir: string): string {
  return `copy the directory aside (cp -a ${dir} ${dir}.bak), then run "npx pirate journal repair ${dir}" (it keeps what can still be read), or move the directory away and start with a new journal`
}

/** What a journal was doing when LevelDB failed, for the messages of its errors. */
type Doing = "open" | "reopen" | "read" | "write to"

const THEN: Record<Doing, string> = {
  open: "then open it again",
  reopen: "then retry: the journal tries to reopen it on the next call, no restart needed",
  read: "then retry",
  "write to": "then retry: the journal reopens its database for the next write, no restart needed",
}

function openFailure(dir: string, err: unknown): PirateError {
  return levelFailure(dir, "open", err)
}

/**
 * A LevelDB failure as the `PirateError` it means: `PIRATE_JOURNAL_LOCKED`, `PIRATE_JOURNAL_CORRUPT`
 * (damage: there is something to repair), `PIRATE_JOURNAL_FULL` (the disk or a quota is full),
 * else `PIRATE_JOURNAL_IO`. `cause` is the level (or system) error.
 */
function levelFailure(dir: string, doing: Doing, err: unknown): PirateError {
  const code = levelCode(err)
  const cause = innermostLevelError(err)
  if (code === "LEVEL_LOCKED") {
    return new PirateError(
      "PIRATE_JOURNAL_LOCKED",
      `the journal in ${dir} is held by a running sender (another process, or another LevelJournal in this one); stop it first, or give this one another directory`,
      { cause },
    )
  }
  const message = levelMessage(err)
  if (isDiskFull(err)) {
    return new PirateError(
      "PIRATE_JOURNAL_FULL",
      `cannot ${doing} the journal in ${dir}: its disk is full (${message}); free space on that disk or move the journal to a bigger one, ${THEN[doing]}`,
      { cause },
    )
  }
  if (code === "LEVEL_CORRUPTION" || /No such file|not found/i.test(message)) {
    return new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${dir} is damaged (${message}); ${howToRecover(dir)}`,
      { cause },
    )
  }
  return new PirateError(
    "PIRATE_JOURNAL_IO",
    `cannot ${doing} the journal in ${dir} (${message}); check the disk and that the directory is readable and writable, ${THEN[doing]}`,
    { cause },
  )
}

/** True for ENOSPC and EDQUOT, as a system error or in a LevelDB status message. */
function isDiskFull(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENOSPC" || code === "EDQUOT") return true
    if (
      /No space left|not enough space on the disk|quota exceeded|disk (is )?full/i.test(e.message)
    )
      return true
  }
  return false
}

/**
 * True for a failure LevelDB reported (classic-level gives some a `LEVEL_` code and leaves the
 * others their status message), as opposed to an error of this library's own.
 */
function fromLevelDb(err: unknown): boolean {
  const inner = innermostLevelError(err)
  return (
    levelCode(err)?.startsWith("LEVEL_") === true ||
    (inner instanceof Error &&
      /^(IO error|NotFound|Corruption|Invalid argument|Not implemented): /.test(inner.message))
  )
}

/** The `LEVEL_*` code of a level error, looking through `LEVEL_DATABASE_NOT_OPEN` wrappers. */
function levelCode(err: unknown): string | undefined {
  const inner = innermostLevelError(err)
  return inner instanceof Error && "code" in inner && typeof inner.code === "string"
    ? inner.code
    : undefined
}

function innermostLevelError(err: unknown): unknown {
  let e = err
  while (e instanceof Error && e.cause instanceof Error) e = e.cause
  return e
}

function levelMessage(err: unknown): string {
  return errorMessage(innermostLevelError(err))
}

function corruptValue(dir: string, key: string, why: string): PirateError {
  return new PirateError(
    "PIRATE_JOURNAL_CORRUPT",
    `the journal in ${dir} holds a damaged entry under "${key}" (${why}); ${howToRecover(dir)}`,
  )
}

function metaOp(meta: Counters): Op {
  const value: Meta = {
    v: FORMAT,
    lastId: meta.lastId ?? null,
    pending: meta.pending,
    dead: meta.dead,
  }
  return { type: "put", key: META, value: Buffer.from(JSON.stringify(value)) }
}

async function readMeta(db: Db, dir: string): Promise<Meta | undefined> {
  let raw: Buffer | undefined
  try {
    raw = await db.get(META) // level's types leave out the undefined of a missing key
  } catch (err) {
    throw openFailure(dir, err)
  }
  if (raw === undefined) return undefined
  let meta: unknown
  try {
    meta = JSON.parse(raw.toString("utf8"))
  } catch {
    meta = undefined
  }
  if (!isMeta(meta)) throw corruptValue(dir, META, "not a valid state record")
  if (meta.v !== FORMAT) {
    throw new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${dir} has format ${meta.v}, and this version of zeromq-pirate reads format ${FORMAT}; use the version that wrote it`,
    )
  }
  return meta
}

function isMeta(value: unknown): value is Meta {
  if (typeof value !== "object" || value === null) return false
  const m = value as Record<string, unknown>
  return (
    typeof m["v"] === "number" &&
    (m["lastId"] === null || typeof m["lastId"] === "string") &&
    Number.isSafeInteger(m["pending"]) &&
    Number.isSafeInteger(m["dead"]) &&
    (m["pending"] as number) >= 0 &&
    (m["dead"] as number) >= 0
  )
}

/**
 * Counts entries (and with `quarantine`, returns the ops that move undecodable ones aside). Refuses
 * a LevelDB database that holds keys this journal never writes: it is someone else's database.
 */
async function scanAll(
  db: Db,
  dir: string,
  quarantine: boolean,
): Promise<{
  pending: number
  dead: number
  quarantined: number
  lastId: string | undefined
  ops: Op[]
}> {
  const out = {
    pending: 0,
    dead: 0,
    quarantined: 0,
    lastId: undefined as string | undefined,
    ops: [] as Op[],
  }
  const it = quarantine ? db.iterator() : db.iterator({ values: false })
  try {
    for (;;) {
      const rows = await it.nextv(1000)
      if (rows.length === 0) break
      for (const [key, value] of rows) {
        const prefix = key.slice(0, 2)
        const id = key.slice(2)
        if (key === META || prefix === QUARANTINE) continue
        if (prefix !== PENDING && prefix !== DEAD) {
          throw new PirateError(
            "PIRATE_JOURNAL_CORRUPT",
            `${dir} holds a LevelDB database that is not a zeromq-pirate journal (key "${key}"); give the journal another directory`,
          )
        }
        out.lastId = maxId(out.lastId, id)
        if (
          quarantine &&
          typeof decodeEntry(key, value, prefix === PENDING ? KIND_PENDING : KIND_DEAD) === "string"
        ) {
          out.ops.push({ type: "put", key: QUARANTINE + key, value }, { type: "del", key })
          out.quarantined++
        } else if (prefix === PENDING) out.pending++
        else out.dead++
      }
    }
  } catch (err) {
    if (err instanceof PirateError) throw err
    throw openFailure(dir, err)
  } finally {
    await it.close()
  }
  return out
}

function maxId(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a > b ? a : b
}

/** What a directory holds, as far as LevelDB is concerned. */
async function inspectDir(
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
      (n) => !/^(CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(log|ldb|sst|dbtmp))$/.test(n),
    ),
  }
}

function notAJournal(dir: string, foreign: string[]): PirateError {
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
async function assertJournalDir(dir: string): Promise<void> {
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

// LevelDB replays its write-ahead logs when it opens and, without paranoid checks (which
// classic-level does not expose), silently drops any record it cannot read, then deletes the
// old log. Checking the logs first turns that silent loss into an error while nothing is lost.
// Format: leveldb/doc/log_format.md — 32 KiB blocks of records [masked crc32c u32][length u16]
// [type u8][data], crc over type + data; a record never crosses a block boundary.
const BLOCK = 32768
const HEADER = 7
const FULL = 1
const FIRST = 2
const MIDDLE = 3
const LAST = 4

async function verifyLogs(dir: string): Promise<void> {
  const logs = (await readdir(dir)).filter((n) => /^\d+\.log$/.test(n))
  for (const name of logs) {
    const file = join(dir, name)
    let buf: Buffer
    try {
      if ((await stat(file)).size === 0) continue
      buf = await readFile(file)
    } catch (err) {
      // Another process holding the journal may just have rolled its log; open() will then
      // report the lock.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue
      throw new PirateError(
        "PIRATE_JOURNAL_IO",
        `cannot read ${file}: ${errorMessage(err)}; check the journal directory's permissions`,
        { cause: err },
      )
    }
    const problem = checkLog(buf)
    if (problem !== undefined) {
      throw new PirateError(
        "PIRATE_JOURNAL_CORRUPT",
        `the journal in ${dir} is damaged (${name}: ${problem}); LevelDB would drop the unreadable writes, so it was not opened; ${howToRecover(dir)}`,
      )
    }
  }
}

/** Returns what is wrong with a LevelDB log, or undefined. A torn last record is not an error. */
function checkLog(buf: Buffer): string | undefined {
  let inRecord = false
  for (let block = 0; block < buf.length; block += BLOCK) {
    const end = Math.min(block + BLOCK, buf.length)
    let off = block
    while (end - off >= HEADER) {
      const length = buf.readUInt16LE(off + 4)
      const type = buf.readUInt8(off + 6)
      if (type === 0 && length === 0) break // preallocated zeros: LevelDB skips the rest of the block
      if (off + HEADER + length > block + BLOCK) return `bad record length at offset ${off}`
      if (type < FULL || type > LAST) return `bad record type ${type} at offset ${off}`
      if (off + HEADER + length > buf.length) return undefined // the writer died mid-record
      const stored = buf.readUInt32LE(off)
      if (unmask(stored) !== crc32c(buf, off + 6, off + HEADER + length)) {
        // The last record of a log may be torn by a power loss (it was never synced).
        if (allZero(buf, off + HEADER + length)) return undefined
        return `checksum mismatch at offset ${off}`
      }
      if ((type === FULL || type === FIRST) && inRecord)
        return `unterminated record before offset ${off}`
      if ((type === MIDDLE || type === LAST) && !inRecord)
        return `record fragment without start at offset ${off}`
      inRecord = type === FIRST || type === MIDDLE
      off += HEADER + length
    }
  }
  return undefined
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[i] = c >>> 0
  }
  return table
})()

function crc32c(buf: Buffer, start: number, end: number): number {
  let c = 0xffffffff
  for (let i = start; i < end; i++) c = (CRC32C_TABLE[(c ^ (buf[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function unmask(masked: number): number {
  const rot = (masked - 0xa282ead8) >>> 0
  return ((rot >>> 17) | (rot << 15)) >>> 0
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false
  return true
}

function encodeEntry(kind: number, e: JournalEntry, deadAt: number | undefined): Buffer {
  const payload: unknown = e.payload
  if (!(payload instanceof Uint8Array)) {
    throw new TypeError(`'payload' must be a Buffer, got ${describe(payload)}`)
  }
  assertNonNegativeInt("attempts", e.attempts)
  if (e.attempts > 0xffffffff)
    throw new RangeError(`'attempts' must be below 2^32, got ${e.attempts}`)
  if (typeof e.enqueuedAt !== "number") {
    throw new TypeError(`'enqueuedAt' must be a number, got ${describe(e.enqueuedAt)}`)
  }
  const error = e.lastError
  const errorLength = error === undefined ? 0 : Buffer.byteLength(error)
  let flags = 0
  let size = FIXED + payload.length
  if (e.notBefore !== undefined) {
    flags |= FLAG_NOT_BEFORE
    size += 8
  }
  if (kind === KIND_DEAD) size += 8
  if (error !== undefined) {
    flags |= FLAG_ERROR
    size += 4 + errorLength
  }
  const buf = Buffer.allocUnsafe(size)
  buf.writeUInt8(kind, 0)
  buf.writeUInt8(flags, 5)
  buf.writeUInt32LE(e.attempts, 6)
  buf.writeDoubleLE(e.enqueuedAt, 10)
  let off = FIXED
  if (e.notBefore !== undefined) off = buf.writeDoubleLE(e.notBefore, off)
  if (kind === KIND_DEAD) off = buf.writeDoubleLE(deadAt ?? 0, off)
  if (error !== undefined) {
    off = buf.writeUInt32LE(errorLength, off)
    off += buf.write(error, off, "utf8")
  }
  buf.set(payload, off)
  buf.writeUInt32LE(crc32(buf.subarray(5)), 1)
  return buf
}

/** Decodes a value; returns a description of the damage instead when it is not valid. */
function decodeEntry(key: string, buf: Buffer, kind: number): JournalEntry | DeadLetter | string {
  if (buf.length < FIXED) return `value of ${buf.length} bytes is too short`
  if (buf.readUInt8(0) !== kind) return `unexpected value kind ${buf.readUInt8(0)}`
  if (buf.readUInt32LE(1) !== crc32(buf.subarray(5))) return "checksum mismatch"
  const flags = buf.readUInt8(5)
  const entry: JournalEntry = {
    id: key.slice(2),
    payload: Buffer.alloc(0),
    attempts: buf.readUInt32LE(6),
    enqueuedAt: buf.readDoubleLE(10),
  }
  let off = FIXED
  if (flags & FLAG_NOT_BEFORE) {
    if (buf.length < off + 8) return "value is truncated"
    entry.notBefore = buf.readDoubleLE(off)
    off += 8
  }
  let deadAt: number | undefined
  if (kind === KIND_DEAD) {
    if (buf.length < off + 8) return "value is truncated"
    deadAt = buf.readDoubleLE(off)
    off += 8
  }
  if (flags & FLAG_ERROR) {
    if (buf.length < off + 4) return "value is truncated"
    const length = buf.readUInt32LE(off)
    off += 4
    if (buf.length < off + length) return "value is truncated"
    entry.lastError = buf.toString("utf8", off, off + length)
    off += length
  }
  // The value buffer is this entry's own (classic-level copies each one), so a view is safe.
  entry.payload = buf.subarray(off)
  if (deadAt === undefined) return entry
  return { ...entry, lastError: entry.lastError ?? "", deadAt }
}

async function getMany(db: Db, keys: string[]): Promise<(Buffer | undefined)[]> {
  return db.getMany(keys) // undefined for a missing key, which level's types leave out
}

function checkId(id: unknown): string {
  if (typeof id !== "string" || id === "")
    throw new TypeError(`'id' must be a non-empty string, got ${describe(id)}`)
  return id
}

function checkLimit(limit: unknown): number {
  if (limit === Infinity) return limit
  assertNonNegativeInt("limit", limit)
  return limit
}

function unique(ids: readonly string[]): string[] {
  for (const id of ids) checkId(id)
  return [...new Set(ids)]
}
