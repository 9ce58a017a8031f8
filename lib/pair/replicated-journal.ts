/**
 * Journal replication for a sender pair (docs/pair.md, section 3): `ReplicatedJournal` is a
 * `Journal` over the active node's own journal that emits every change it made as a record with
 * a sequence number; `ReplicationApplier` replays those records, in order, onto the passive's
 * journal.
 */
import { TAKES_SPLIT_BODIES, joinBody, prefixOf } from "../body.js"
import { PirateError } from "../errors.js"
import type {
  DeadLetter,
  Journal,
  JournalEntry,
  JournalStats,
  JournalUpdate,
} from "../journal/types.js"
import { assertFunction, assertNonNegativeInt } from "../validate.js"

/** The dedupe changes of a `remove()`. */
export interface DedupeChanges {
  acked: readonly string[]
  forget: readonly string[]
  at: number
}

/** One change, as the active's journal made it (docs/pair.md, table of section 3.1). */
export type ReplicationOp =
  | { op: "append"; entries: JournalEntry[] }
  | { op: "schedule"; entries: JournalEntry[] }
  | { op: "remove"; ids: string[]; dedupe?: DedupeChanges }
  | { op: "update"; updates: JournalUpdate[] }
  | { op: "bury"; letters: DeadLetter[] }
  /** The dead letters the active's journal moved back to pending, as they now are. */
  | { op: "replay"; entries: JournalEntry[] }
  | { op: "purge"; ids: string[] }
  /** The scheduled entries the active's journal moved to pending, whole. */
  | { op: "promote"; entries: JournalEntry[] }
  /** The ids the active's journal deleted from scheduled. */
  | { op: "unschedule"; ids: string[] }
  | { op: "dedupe"; before: number }

/** A change with its place in the stream: `seq` grows by one per record, from 1. */
export type ReplicationRecord = ReplicationOp & { seq: number }

export interface ReplicatedJournalOptions {
  /** Called with each record, synchronously, once the local write it describes succeeded. */
  onRecord: (record: ReplicationRecord) => void
  /**
   * Records hold copies of the entries, their bodies whole (true), or the caller's entries as
   * given, split bodies split (false: for an `onRecord` that encodes them before it returns, as
   * the pair's active does). @defaultValue true
   */
  copyEntries?: boolean
  /** The seq of the last record of this stream already emitted. @defaultValue 0 */
  seq?: number
}

/** An entry as a record keeps it: a copy of its own, its body whole (see lib/body.ts). */
function copyEntry<T extends JournalEntry>(e: T): T {
  return prefixOf(e.payload) === undefined ? { ...e } : { ...e, payload: joinBody(e.payload) }
}

/**
 * A `Journal` that does every change on `inner` and then emits it as a `ReplicationRecord`.
 * Reads go to `inner`. It has exactly the optional methods `inner` has, so a sender sees the
 * same capabilities. A failed write emits nothing (its caller retries it, which is a new record).
 *
 * Records are emitted in the order the writes complete. The journal's one caller never has two
 * writes on one id in flight (see `Journal`), so for each id that is the order of its changes.
 */
export class ReplicatedJournal implements Journal {
  readonly inner: Journal
  readonly persistent: boolean
  readonly #onRecord: (record: ReplicationRecord) => void
  /** The entries a record holds (see `copyEntries`). */
  readonly #entries: <T extends JournalEntry>(entries: readonly T[]) => T[]
  #seq: number

  readonly senderId?: NonNullable<Journal["senderId"]>
  readonly schedule?: NonNullable<Journal["schedule"]>
  readonly due?: NonNullable<Journal["due"]>
  readonly nextDue?: NonNullable<Journal["nextDue"]>
  readonly promote?: NonNullable<Journal["promote"]>
  readonly unschedule?: NonNullable<Journal["unschedule"]>
  readonly dedupeLookup?: NonNullable<Journal["dedupeLookup"]>
  readonly dedupeForget?: NonNullable<Journal["dedupeForget"]>

  constructor(inner: Journal, options: ReplicatedJournalOptions) {
    if (typeof inner !== "object" || inner === null || typeof inner.append !== "function")
      throw new TypeError("'inner' must be a Journal")
    assertFunction("onRecord", options.onRecord)
    const seq = options.seq ?? 0
    assertNonNegativeInt("seq", seq)
    this.inner = inner
    this.persistent = inner.persistent
    this.#onRecord = options.onRecord
    this.#entries =
      options.copyEntries === false
        ? (entries) => [...entries]
        : (entries) => entries.map(copyEntry)
    this.#seq = seq
    // The wrapper takes split bodies when its journal does; records join them (copyEntry).
    if (TAKES_SPLIT_BODIES in inner)
      Object.defineProperty(this, TAKES_SPLIT_BODIES, { value: true })

    // Each optional method is there exactly when the inner journal has it.
    if (inner.senderId) this.senderId = () => missing("senderId", inner.senderId?.())
    if (inner.due) this.due = (o) => missing("due", inner.due?.(o))
    if (inner.nextDue) this.nextDue = () => missing("nextDue", inner.nextDue?.())
    if (inner.dedupeLookup)
      this.dedupeLookup = (ids) => missing("dedupeLookup", inner.dedupeLookup?.(ids))
    if (inner.schedule) {
      this.schedule = async (entries, o) => {
        await missing("schedule", inner.schedule?.(entries, o))
        if (entries.length > 0) this.#emit({ op: "schedule", entries: this.#entries(entries) })
      }
    }
    if (inner.promote) {
      this.promote = async (entries, o) => {
        const moved = await missing("promote", inner.promote?.(entries, o))
        if (moved.length > 0) {
          // Whole entries, so that a passive that lacks one (a full copy) still ends up with it.
          const set = new Set(moved)
          const whole = this.#entries(entries.filter((e) => set.delete(e.id)))
          this.#emit({ op: "promote", entries: whole })
        }
        return moved
      }
    }
    if (inner.unschedule) {
      this.unschedule = async (ids) => {
        const deleted = await missing("unschedule", inner.unschedule?.(ids))
        if (deleted.length > 0) this.#emit({ op: "unschedule", ids: [...deleted] })
        return deleted
      }
    }
    if (inner.dedupeForget) {
      this.dedupeForget = async (before) => {
        const n = await missing("dedupeForget", inner.dedupeForget?.(before))
        if (n > 0) this.#emit({ op: "dedupe", before })
        return n
      }
    }
  }

  /** The seq of the last record emitted (0 before the first). */
  get seq(): number {
    return this.#seq
  }

  open(): Promise<void> {
    return this.inner.open()
  }

  close(): Promise<void> {
    return this.inner.close()
  }

  /**
   * The one change emitted before its local write, so that the passive writes it while this node
   * does (a replicated send waits for both, not one after the other). A local write that fails
   * is undone on the passive by a `remove` record of those entries (and their send ids): the
   * caller retries it, which is a new record.
   */
  async append(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void> {
    if (entries.length === 0) return this.inner.append(entries, options)
    this.#emit({ op: "append", entries: this.#entries(entries) })
    try {
      await this.inner.append(entries, options)
    } catch (err) {
      const forget: string[] = []
      for (const e of entries) if (e.dedupeId !== undefined) forget.push(e.dedupeId)
      const ids = entries.map((e) => e.id)
      this.#emit(
        forget.length === 0
          ? { op: "remove", ids }
          : { op: "remove", ids, dedupe: { acked: [], forget, at: Date.now() } },
      )
      throw err
    }
  }

  async remove(ids: readonly string[], dedupe?: DedupeChanges): Promise<void> {
    await (dedupe === undefined ? this.inner.remove(ids) : this.inner.remove(ids, dedupe))
    if (ids.length === 0 && dedupe === undefined) return
    const op: ReplicationOp = { op: "remove", ids: [...ids] }
    if (dedupe !== undefined)
      op.dedupe = { acked: [...dedupe.acked], forget: [...dedupe.forget], at: dedupe.at }
    this.#emit(op)
  }

  async update(updates: readonly JournalUpdate[]): Promise<void> {
    await this.inner.update(updates)
    if (updates.length > 0) this.#emit({ op: "update", updates: updates.map((u) => ({ ...u })) })
  }

  async bury(letters: readonly DeadLetter[]): Promise<void> {
    await this.inner.bury(letters)
    if (letters.length > 0) this.#emit({ op: "bury", letters: this.#entries(letters) })
  }

  async replay(ids: readonly string[]): Promise<JournalEntry[]> {
    const moved = await this.inner.replay(ids)
    if (moved.length > 0) this.#emit({ op: "replay", entries: this.#entries(moved) })
    return moved
  }

  async purgeDead(ids: readonly string[]): Promise<number> {
    const n = await this.inner.purgeDead(ids)
    if (n > 0) this.#emit({ op: "purge", ids: [...ids] })
    return n
  }

  pending(options: { after?: string; until?: string; limit: number }): Promise<JournalEntry[]> {
    return this.inner.pending(options)
  }

  dead(options?: { after?: string; limit?: number }): Promise<DeadLetter[]> {
    return this.inner.dead(options)
  }

  lastId(): Promise<string | undefined> {
    return this.inner.lastId()
  }

  stats(): Promise<JournalStats> {
    return this.inner.stats()
  }

  #emit(op: ReplicationOp): void {
    this.#seq++
    this.#onRecord({ ...op, seq: this.#seq })
  }
}

export interface ReplicationApplierOptions {
  /** Write (and sync) each applied record's changes to disk: `pair.sync`. */
  sync: boolean
  /** The seq of the last record already applied (from the pair file). @defaultValue 0 */
  applied?: number
}

/**
 * Applies a stream of records to a journal, in order. A record at or below `applied` is skipped
 * (a repeat: every op is idempotent, so a lagging position only repeats work); a record after a
 * gap is refused, as applying it would lose the missing changes.
 */
export class ReplicationApplier {
  readonly journal: Journal
  readonly #sync: boolean
  #applied: number
  #queue: Promise<unknown> = Promise.resolve()

  constructor(journal: Journal, options: ReplicationApplierOptions) {
    if (typeof journal !== "object" || journal === null || typeof journal.append !== "function")
      throw new TypeError("'journal' must be a Journal")
    const applied = options.applied ?? 0
    assertNonNegativeInt("applied", applied)
    this.journal = journal
    this.#sync = options.sync
    this.#applied = applied
  }

  /** The seq of the last record applied. */
  get applied(): number {
    return this.#applied
  }

  /**
   * Applies records in order (calls are queued: one batch at a time); resolves with the seq of
   * the last record applied, to acknowledge.
   * @throws PirateError `PIRATE_PROTOCOL` when a record's seq leaves a gap (catch up instead);
   *   the journal's own errors, after which `applied` says how far it got
   */
  apply(records: readonly ReplicationRecord[]): Promise<number> {
    const run = this.#queue.then(() => this.#apply(records))
    this.#queue = run.catch(() => undefined)
    return run
  }

  async #apply(records: readonly ReplicationRecord[]): Promise<number> {
    for (const record of records) {
      if (record.seq <= this.#applied) continue
      if (record.seq !== this.#applied + 1) {
        throw new PirateError(
          "PIRATE_PROTOCOL",
          `replication record ${record.seq} follows ${this.#applied}: records ${this.#applied + 1} to ${record.seq - 1} are missing; the passive must catch up`,
        )
      }
      await applyRecord(this.journal, record, { sync: this.#sync })
      this.#applied = record.seq
    }
    return this.#applied
  }
}

/**
 * Replays one change onto `journal` (its seq is not checked: see `ReplicationApplier`). Records
 * hold whole bodies, which every journal takes.
 */
export async function applyRecord(
  journal: Journal,
  record: ReplicationOp,
  options: { sync: boolean },
): Promise<void> {
  switch (record.op) {
    case "append":
      return journal.append(record.entries, options)
    case "schedule":
      return missing("schedule", journal.schedule?.(record.entries, options))
    case "remove":
      return record.dedupe === undefined
        ? journal.remove(record.ids)
        : journal.remove(record.ids, record.dedupe)
    case "update":
      return journal.update(record.updates)
    case "bury":
      return journal.bury(record.letters)
    case "replay": {
      // A move writes its destination even when the source is missing here (a full copy whose
      // dead page was read after the replay): what the active moved, the passive holds.
      const moved = new Set(
        (await journal.replay(record.entries.map((e) => e.id))).map((e) => e.id),
      )
      const rest = record.entries.filter((e) => !moved.has(e.id))
      if (rest.length > 0) await journal.append(rest, options)
      return
    }
    case "purge":
      await journal.purgeDead(record.ids)
      return
    case "promote": {
      const moved = new Set(await missing("promote", journal.promote?.(record.entries, options)))
      const rest = record.entries.filter((e) => !moved.has(e.id))
      if (rest.length > 0) await journal.append(rest, options)
      return
    }
    case "unschedule":
      await missing("unschedule", journal.unschedule?.(record.ids))
      return
    case "dedupe":
      await missing("dedupeForget", journal.dedupeForget?.(record.before))
      return
  }
}

/**
 * The result of a call of an optional method of a journal (`journal.method?.(…)`).
 * @throws TypeError when the journal lacks the method: both nodes of a pair need journals of one kind
 */
function missing<T>(name: string, result: Promise<T> | undefined): Promise<T> {
  if (result === undefined)
    throw new TypeError(
      `the journal has no ${name}(): both nodes of a pair need journals of the same kind`,
    )
  return result
}
