import { TAKES_SPLIT_BODIES } from "../body.js"
import { debug } from "../debug.js"
import { PirateError, errorMessage } from "../errors.js"
import { assertNonNegativeInt, describe } from "../validate.js"
import { getMany, loadDatabase, type Db } from "./level-db.js"
import { corruptValue } from "./level-errors.js"
import {
  DEAD,
  META,
  PENDING,
  SCHEDULED,
  decodeEntry,
  encodeEntry,
  encodeMeta,
  encodeScheduled,
  isStoredId,
  scheduledToPending,
  type Counters,
  checkDedupeChanges,
  checkId,
  checkTime,
  dedupeKey,
  checkLimit,
  checkStoredId,
  removed,
  unique,
} from "./level-format.js"
import { checkEntry } from "./level-batch.js"
import { BatchStore, merge, type Op } from "./level-batch-store.js"
import { resolveLevelJournalOptions, type LevelJournalOptions } from "./level-options.js"
import {
  appendWrite,
  buryWrite,
  keepFields,
  removeWrite,
  toPendingWrite,
  updateWrite,
  type PendingWriteHost,
} from "./level-pending.js"
import { repairJournal, type LevelJournalRepairReport } from "./level-repair.js"
import { LevelHandle } from "./level-handle.js"
import { checkSenderId, writeSenderIdFile } from "./level-sender-id.js"
import type { Status } from "../lifecycle.js"
import { SegmentChanges, ValueLog } from "./level-values.js"
import { SendIdRecords, storableKeys } from "./level-dedupe.js"
import { ScheduledIndex, checkNotBefore } from "./level-schedule.js"
import type {
  DeadLetter,
  DedupeRecord,
  Journal,
  JournalEntry,
  JournalStats,
  JournalUpdate,
} from "./types.js"

export type { LevelJournalRepairReport, LostEntry } from "./level-repair.js"
export type { LevelJournalOptions } from "./level-options.js"

/**
 * A journal in a LevelDB database: entries survive the process, and with `sync: true` the machine.
 *
 * One process (and one `LevelJournal`) holds a journal at a time. Every write is one atomic LevelDB
 * batch that also carries the counters, a checksum of all keys and the greatest id ever stored;
 * `open()` reads every key once and refuses a journal whose keys disagree with them, and every
 * value carries its id under its own checksum, so a damaged key or value is an error, never an
 * entry silently skipped or read under another id. Ids are 16 lower-case hex digits (an
 * `IdGenerator`'s).
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
  /**
   * It writes a split body's parts itself (see lib/body.ts).
   * @internal
   */
  readonly [TAKES_SPLIT_BODIES] = true
  /** Absolute path of the journal's directory. */
  readonly path: string
  /** The database: opened, closed, reopened after a failed write; writes one at a time. */
  readonly #db: LevelHandle
  #pending = 0
  #dead = 0
  #scheduled = 0
  #dedupe = 0
  /** The send ids' records (`k:`, `K:`), see level-dedupe.ts. */
  readonly #sendIds: SendIdRecords
  /** The scheduled entries' due-time index (`s:`, `t:`), see level-schedule.ts. */
  readonly #scheduledIndex: ScheduledIndex
  #lastId: string | undefined
  #keySum = 0
  /** The batches on disk (`b:` keys) and which of their entries are still pending. */
  readonly #batches: BatchStore
  /** The segment files that hold the values of batches. */
  readonly #values: ValueLog
  /** The writes that change pending entries (see level-pending.ts). */
  readonly #writes: PendingWriteHost
  /** A compaction of the value log in progress (see `#compactLater`). */
  #compacting: Promise<void> | undefined

  /**
   * Validates the options; does no I/O (call `open()`).
   *
   * @param options - the directory, or {@link LevelJournalOptions}
   * @throws TypeError when the path is not a non-empty string, or for an unknown option
   */
  constructor(options: string | LevelJournalOptions) {
    const { path, minBatch } = resolveLevelJournalOptions(options)
    this.path = path
    this.#values = new ValueLog(this.path)
    this.#batches = new BatchStore(this.path, this.#values)
    this.#sendIds = new SendIdRecords(this.path)
    this.#scheduledIndex = new ScheduledIndex(this.path)
    this.#writes = {
      batches: this.#batches,
      sendIds: this.#sendIds,
      minBatch,
      lastId: () => this.#lastId,
      meta: () => this.#meta(),
      commit: (db, ops, next, sync, segments) => this.#commit(db, ops, next, sync, segments),
      decode: (key, value) => this.#decode(key, value),
    }
    this.#db = new LevelHandle(this.path, {
      load: (doing) => this.#load(doing),
      closing: async () => {
        this.#batches.forget()
        await this.#values.close()
      },
    })
  }

  /**
   * `new LevelJournal(options)` and {@link open} in one step.
   *
   * @throws see the constructor and {@link open}
   */
  static async open(options: string | LevelJournalOptions): Promise<LevelJournal> {
    const journal = new LevelJournal(options)
    await journal.open()
    return journal
  }

  /** `"new"` until `open()` (and after a failed one), then `"opening"`, `"open"`, `"closing"`, `"closed"`. */
  get status(): Status {
    return this.#db.status
  }

  /**
   * Opens (creating when missing) the journal. Idempotent; a failed open may be retried.
   *
   * @throws PirateError `PIRATE_JOURNAL_LOCKED` when another process or `LevelJournal` holds it;
   *   `PIRATE_JOURNAL_CORRUPT` when it is damaged or cannot be read; `PIRATE_JOURNAL_FULL` when its
   *   disk is full; `PIRATE_JOURNAL_IO` for another I/O failure; `PIRATE_CLOSED` after `close()`.
   */
  open(): Promise<void> {
    return this.#db.open()
  }

  /** Closes the journal once the writes in progress are done. Idempotent. */
  close(): Promise<void> {
    return this.#db.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async append(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void> {
    const sync = options.sync
    if (typeof sync !== "boolean")
      throw new TypeError(`'sync' must be a boolean, got ${describe(sync)}`)
    // One entry per id, the last given: a sender's appends come in increasing id order, which
    // needs no map to be so.
    let increasing = true
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as JournalEntry
      checkEntry(e)
      checkStoredId(e.id)
      if (i > 0 && e.id <= (entries[i - 1] as JournalEntry).id) increasing = false
    }
    const list = increasing ? entries : [...new Map(entries.map((e) => [e.id, e])).values()]
    if (list.length === 0) return
    await this.#db.write((db) => appendWrite(this.#writes, db, list, sync))
  }

  /**
   * Deletes acknowledged entries in one write; with `dedupe`, marks the send ids in `acked` as
   * acked at `at` and forgets those in `forget`, in the same write. Unknown ids and send ids are
   * ignored; a send id in both lists is forgotten.
   */
  async remove(
    ids: readonly string[],
    dedupe?: { acked: readonly string[]; forget: readonly string[]; at: number },
  ): Promise<void> {
    const wanted = unique(ids)
    let acked: string[] = []
    let forget: string[] = []
    if (dedupe !== undefined) {
      checkDedupeChanges(dedupe)
      acked = storableKeys(dedupe.acked)
      forget = storableKeys(dedupe.forget)
    }
    if (wanted.length === 0 && acked.length === 0 && forget.length === 0) return
    await this.#db.write((db) => removeWrite(this.#writes, db, wanted, dedupe, acked, forget))
  }

  /**
   * The record of each send id (undefined: unknown, forgotten, or no send id the journal can
   * store), in the order given.
   */
  async dedupeLookup(dedupeIds: readonly string[]): Promise<(DedupeRecord | undefined)[]> {
    return this.#sendIds.lookup((read) => this.#db.read(read), dedupeIds)
  }

  /**
   * Forgets the send ids of messages acked before `before`: a range read of the acked-time index
   * (`K:`), never a scan of every record, deleting both keys of each, in writes of at most
   * 10 000. Resolves with how many were forgotten.
   */
  async dedupeForget(before: number): Promise<number> {
    checkTime("before", before)
    let total = 0
    for (;;) {
      const { forgotten, done } = await this.#db.write(async (db) => {
        const ops: Op[] = []
        const next = this.#meta()
        const page = await this.#sendIds.forgetPage(db, before, ops, next)
        if (ops.length > 0) await this.#commit(db, ops, next, false, new SegmentChanges())
        this.#sendIds.forgotPage(page)
        return page
      })
      total += forgotten
      if (done) return total
    }
  }

  async update(updates: readonly JournalUpdate[]): Promise<void> {
    const byId = new Map<string, JournalUpdate>()
    for (const u of updates) {
      checkId(u.id)
      assertNonNegativeInt("attempts", u.attempts)
      if (isStoredId(u.id)) byId.set(u.id, u) // another id cannot be there
    }
    if (byId.size === 0) return
    await this.#db.write((db) => updateWrite(this.#writes, db, byId))
  }

  async bury(letters: readonly DeadLetter[]): Promise<void> {
    const byId = new Map<string, Buffer>()
    const unnamed = new Map<string, DeadLetter>()
    for (const d of letters) {
      if (typeof d.lastError !== "string") {
        throw new TypeError(`'lastError' must be a string, got ${describe(d.lastError)}`)
      }
      if (typeof d.deadAt !== "number") {
        throw new TypeError(`'deadAt' must be a number, got ${describe(d.deadAt)}`)
      }
      byId.set(checkStoredId(d.id), encodeEntry(d, d.deadAt))
      if (d.dedupeId === undefined) unnamed.set(d.id, d)
    }
    if (byId.size === 0) return
    await this.#db.write((db) => buryWrite(this.#writes, db, byId, unnamed))
  }

  async pending(options: {
    after?: string
    until?: string
    limit: number
  }): Promise<JournalEntry[]> {
    const limit = checkLimit(options.limit)
    if (limit === 0) return []
    const { after, until } = options
    const range: { gt: string; lt?: string; lte?: string; limit: number } = {
      gt: PENDING + (after ?? ""),
      limit: limit === Infinity ? -1 : limit,
    }
    if (until === undefined) range.lt = "p;"
    else range.lte = PENDING + until
    // Between writes, not beside one: an update moves an entry of a batch to a `p:` key of its
    // own, and a read of the `p:` keys before it and of the batches after it would miss that entry
    // (the sender reads pages of what is set aside for a queue while it retries other entries).
    return this.#db.write(async (db) => {
      const rows = await db.iterator(range).all()
      const loose = rows.map(([key, value]) => this.#decode(key, value))
      const batched = await this.#batches.pending(db, after, until, limit)
      return merge(loose, batched, limit)
    })
  }

  async dead(options: { after?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    const limit = checkLimit(options.limit ?? Infinity)
    if (limit === 0) return []
    const range = {
      gt: DEAD + (options.after ?? ""),
      lt: "d;",
      limit: limit === Infinity ? -1 : limit,
    }
    const rows = await this.#db.read((db) => db.iterator(range).all())
    return rows.map(([key, value]) => this.#decode(key, value) as DeadLetter)
  }

  async replay(ids: readonly string[]): Promise<JournalEntry[]> {
    const wanted = unique(ids).sort() // code-unit order, as LevelDB's keys and `<` sort
    if (wanted.length === 0) return []
    // An id can be pending and dead at once (appended again after it was buried): replaying it
    // replaces the pending entry.
    return this.#toPending(DEAD, wanted, false, (id, stored) => {
      const d = this.#decode(DEAD + id, stored)
      const entry: JournalEntry = { id, payload: d.payload, attempts: 0, enqueuedAt: d.enqueuedAt }
      keepFields(entry, d, false)
      return { drop: [], value: encodeEntry(entry, undefined), out: entry }
    })
  }

  /**
   * Moves the entries stored under `from` + id (dead letters, scheduled entries) to pending, in one
   * write: `move` gives for each one found the pending value and the other keys to delete with it.
   * An id pending already (appended again) is replaced, and counted once, as `append()` does.
   */
  #toPending<T>(
    from: string,
    wanted: string[],
    sync: boolean,
    move: (id: string, stored: Buffer) => { drop: string[]; value: Buffer; out: T },
  ): Promise<T[]> {
    return this.#db.write((db) => toPendingWrite(this.#writes, db, from, wanted, sync, move))
  }

  async purgeDead(ids: readonly string[]): Promise<number> {
    const keys = unique(ids).map((id) => DEAD + id)
    if (keys.length === 0) return 0
    return this.#db.write(async (db) => {
      // Their values name their send ids, whose records go with them.
      const values = await getMany(db, keys)
      const ops: Op[] = []
      const next = this.#meta()
      const segments = new SegmentChanges()
      const named = new Map<string, string>()
      keys.forEach((key, i) => {
        const value = values[i]
        if (value === undefined) return
        ops.push({ type: "del", key })
        removed(next, key)
        const letter = decodeEntry(key, value) // a damaged one goes all the same
        if (typeof letter !== "string" && letter.dedupeId !== undefined)
          named.set(dedupeKey(letter.dedupeId), letter.id)
      })
      const purged = ops.length
      if (purged === 0) return 0
      await this.#sendIds.forgetNamed(db, named, ops, next)
      await this.#commit(db, ops, next, false, segments) // adds the counters to ops
      return purged
    })
  }

  /**
   * Keeps `id` as this journal's sender id (the `SENDER_ID` file, which `journalSenderId()` reads):
   * a sender pair's passive takes the pair's id (docs/pair.md, section 6.2).
   *
   * @throws TypeError when `id` is not 32 lower-case hex digits; PirateError `PIRATE_JOURNAL_IO`
   *   when the file cannot be written
   */
  async adoptSenderId(id: string): Promise<void> {
    checkSenderId(id)
    try {
      await writeSenderIdFile(this.path, id)
    } catch (err) {
      throw new PirateError(
        "PIRATE_JOURNAL_IO",
        `cannot keep the sender id in ${this.path}: ${errorMessage(err)}; check the journal directory's permissions and free space`,
        { cause: err },
      )
    }
  }

  async lastId(): Promise<string | undefined> {
    await this.#db.ready()
    return this.#lastId
  }

  async stats(): Promise<JournalStats> {
    await this.#db.ready()
    const stats: JournalStats = {
      pending: this.#pending,
      dead: this.#dead,
      scheduled: this.#scheduled,
    }
    if (this.#dedupe > 0) stats.dedupe = this.#dedupe
    return stats
  }

  /**
   * Stores entries due later under `s:` keys, with their due time in the `t:` index (see
   * level-format.ts): no scheduled entry costs memory. An id scheduled already is replaced.
   *
   * @throws TypeError/RangeError for an entry without a finite `notBefore`, or see `append()`
   */
  async schedule(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void> {
    const sync = options.sync
    if (typeof sync !== "boolean")
      throw new TypeError(`'sync' must be a boolean, got ${describe(sync)}`)
    const byId = new Map<string, { entry: JournalEntry; value: Buffer }>()
    for (const e of entries) {
      checkEntry(e)
      checkStoredId(e.id)
      checkNotBefore(e.notBefore)
      byId.set(e.id, { entry: e, value: encodeScheduled(e) })
    }
    if (byId.size === 0) return
    await this.#db.write(async (db) => {
      const ops: Op[] = []
      const next = this.#meta()
      await this.#scheduledIndex.scheduleOps(db, byId, this.#lastId, ops, next)
      await this.#sendIds.rememberOps(
        db,
        [...byId.values()].map((v) => v.entry),
        ops,
        next,
      )
      await this.#commit(db, ops, next, sync, new SegmentChanges())
    })
  }

  /** Scheduled entries with `notBefore <= until`, earliest first (ties in id order), at most `limit`. */
  async due(options: { until: number; limit: number }): Promise<JournalEntry[]> {
    const limit = checkLimit(options.limit)
    const until = options.until
    if (typeof until !== "number" || Number.isNaN(until))
      throw new TypeError(`'until' must be a number, got ${describe(until)}`)
    if (limit === 0 || until === -Infinity) return []
    return this.#db.read((db) => this.#scheduledIndex.due(db, until, limit))
  }

  /** The earliest `notBefore` among scheduled entries; undefined when there is none. */
  async nextDue(): Promise<number | undefined> {
    return this.#db.read((db) => this.#scheduledIndex.nextDue(db))
  }

  /**
   * Moves scheduled entries to pending in one write, as they are stored (only the ids of
   * `entries` are read): each becomes a `p:` entry, as `append()` of it would have written.
   */
  async promote(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<string[]> {
    const sync = options.sync
    if (typeof sync !== "boolean")
      throw new TypeError(`'sync' must be a boolean, got ${describe(sync)}`)
    const wanted = unique(entries.map((e) => e.id))
    if (wanted.length === 0) return []
    return this.#toPending(SCHEDULED, wanted, sync, (id, stored) => ({
      drop: [this.#scheduledIndex.indexKeyOf(id, stored)],
      value: scheduledToPending(stored),
      out: id,
    }))
  }

  /** Deletes scheduled entries (not pending ones); resolves with the ids that were deleted. */
  async unschedule(ids: readonly string[]): Promise<string[]> {
    const wanted = unique(ids)
    if (wanted.length === 0) return []
    return this.#db.write(async (db) => {
      const ops: Op[] = []
      const next = this.#meta()
      const { deleted, named } = await this.#scheduledIndex.unscheduleOps(db, wanted, ops, next)
      // A cancelled message's send id is forgotten with it.
      await this.#sendIds.forgetNamed(db, named, ops, next)
      if (deleted.length > 0) await this.#commit(db, ops, next, false, new SegmentChanges())
      return deleted
    })
  }

  /**
   * Repairs a damaged journal in place and reports every entry it could not keep. It reads the
   * logs before LevelDB replays them (LevelDB drops what it cannot read of a log, and with it
   * the rest of its 32 KiB block), runs LevelDB's repair when the database will not open or
   * read, puts an entry whose key is damaged back under the id its value carries, writes again
   * the dropped log writes whose values pass their checksums, moves what fails its checksum
   * aside under the `q:` prefix, and recounts. It compares the counters the journal stored last
   * with what is left, so entries lost without a readable id are counted too. Copy the
   * directory first: what LevelDB drops is gone.
   *
   * @param path - the journal's directory
   * @returns the counts after the repair, the counters before it, and what was lost
   *   (`lost` > 0, or `warnings`, when anything may have been)
   * @throws PirateError `PIRATE_JOURNAL_LOCKED` when a process holds the journal;
   *   `PIRATE_NOT_FOUND` when there is no journal there; `PIRATE_JOURNAL_CORRUPT` when even a
   *   repaired database cannot be read
   */
  static async repair(path: string): Promise<LevelJournalRepairReport> {
    return repairJournal(new LevelJournal(path).path)
  }

  /** Opens the database (see `loadDatabase`) and takes its counters: at `open()` and after a failed write. */
  async #load(doing: "open" | "reopen"): Promise<Db> {
    const { db, counters } = await loadDatabase(this.path, doing, this.#batches, this.#values)
    this.#pending = counters.pending
    this.#dead = counters.dead
    this.#scheduled = counters.scheduled
    this.#dedupe = counters.dedupe
    this.#sendIds.reset()
    this.#scheduledIndex.reset()
    this.#lastId = counters.lastId
    this.#keySum = counters.keySum
    return db
  }

  async #commit(
    db: Db,
    ops: Op[],
    next: Counters,
    sync: boolean,
    segments: SegmentChanges,
  ): Promise<void> {
    const gone = this.#values.ops(segments, ops, next)
    ops.push({ type: "put", key: META, value: encodeMeta(next) })
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
      this.#db.markStale()
      throw err
    }
    this.#pending = next.pending
    this.#dead = next.dead
    this.#scheduled = next.scheduled
    this.#dedupe = next.dedupe
    this.#lastId = next.lastId
    this.#keySum = next.keySum
    this.#values.applied(segments, gone)
    this.#compactLater()
  }

  /**
   * Moves the last batches of segments that are nearly empty to the active one, in a write of its
   * own after the current one, so that their files go (see COMPACT_LIVE in level-values.ts).
   */
  #compactLater(): void {
    if (this.#compacting || this.#db.closing) return
    const candidates = this.#values.compactable()
    if (candidates.size === 0) return
    this.#compacting = this.#db
      .write(async (db) => {
        for (const [segment, live] of candidates) {
          const ops: Op[] = []
          const next = this.#meta()
          const segments = new SegmentChanges()
          const moved = await this.#batches.moveOps(db, segment, live, ops, segments)
          this.#values.tried(segment, live)
          if (moved.length === 0) continue
          await this.#commit(db, ops, next, true, segments)
          for (const m of moved) m.batch.segment = m.segment
        }
      })
      .catch((err: unknown) =>
        debug("journal %s: compaction failed: %s", this.path, errorMessage(err)),
      )
      .finally(() => {
        this.#compacting = undefined
      })
  }

  /** A copy of the counters, for a write to change and commit. */
  #meta(): Counters {
    return {
      pending: this.#pending,
      dead: this.#dead,
      scheduled: this.#scheduled,
      dedupe: this.#dedupe,
      lastId: this.#lastId,
      keySum: this.#keySum,
    }
  }

  #decode(key: string, value: Buffer): JournalEntry | DeadLetter {
    const entry = decodeEntry(key, value)
    if (typeof entry === "string") throw corruptValue(this.path, key, entry)
    return entry
  }
}
