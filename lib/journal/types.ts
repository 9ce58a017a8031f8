/** When `send()` resolves: kept in memory only, written to the OS (LevelDB, not synced), or synced to disk. */
export type Durability = "memory" | "os" | "fsync"

/** A message that is not yet acknowledged. */
export interface JournalEntry {
  /** Unique, stable id; ids sort in send order (see `IdGenerator`). */
  id: string
  /** The encoded payload, as it goes on the wire. */
  payload: Buffer
  /** Attempts already made and known to have failed or been abandoned. */
  attempts: number
  /** The error of the last failed attempt. */
  lastError?: string
  /** Epoch ms before which the message must not be delivered (retry backoff). */
  notBefore?: number | undefined
  /** Epoch ms when the message was first accepted. */
  enqueuedAt: number
  /** Epoch ms after which the message is not to be dispatched again (it expires). */
  expiresAt?: number | undefined
  /** Dispatch priority, an integer from 0 to 9 (higher first); absent means the default, 4. */
  priority?: number | undefined
  /** Messages with one key are processed one at a time, in send order (at most 1024 utf-8 bytes). */
  key?: string | undefined
  /** The caller's send id (`send(payload, { id })`): at most 256 utf-8 bytes. */
  dedupeId?: string | undefined
  /** Its named queue (`send(payload, { queue })`): 1 to 255 utf-8 bytes; absent means `"default"`. */
  queue?: string | undefined
  /** Its headers (`send(payload, { headers })`): string keys and values, delivered as `ctx.headers`. */
  headers?: Readonly<Record<string, string>> | undefined
}

/** What the journal remembers of a caller's send id. */
export interface DedupeRecord {
  /** The message the send id named. */
  id: string
  /** Epoch ms when that message was acked; absent while it is pending, scheduled or dead. */
  ackedAt?: number | undefined
}

/** A message given up on: kept with its last error until replayed or purged. */
export interface DeadLetter extends JournalEntry {
  lastError: string
  /** Epoch ms when it was dead-lettered. */
  deadAt: number
}

/** A change to a pending entry after a failed attempt. */
export interface JournalUpdate {
  id: string
  attempts: number
  lastError?: string
  notBefore?: number
}

export interface JournalStats {
  pending: number
  dead: number
  /** Entries stored by `schedule()` and not yet promoted (both built-in journals count them). */
  scheduled?: number
  /**
   * Send ids remembered (`JournalEntry.dedupeId`). Both built-in journals count them, and leave
   * the field out while there is none (so a journal of plain sends reports what it always did).
   */
  dedupe?: number
}

/**
 * Storage for a sender's unacknowledged messages. Implementations: `MemoryJournal`, `LevelJournal`.
 * Every implementation passes the shared suite in `test/suites/journal.ts`.
 *
 * Calls are issued by one sender; implementations may assume no two writes race on the same id.
 */
export interface Journal {
  /** Opens the journal. Throws `PIRATE_JOURNAL_LOCKED` when another process holds it. Idempotent. */
  open(): Promise<void>
  /** Closes the journal. Idempotent. */
  close(): Promise<void>
  /** True when entries survive the process (a memory journal returns false). */
  readonly persistent: boolean
  /**
   * Adds new entries in one batch (group commit); resolves once written, and synced to disk when
   * `sync` is true.
   */
  append(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void>
  /**
   * Deletes acknowledged entries in one batch. Unknown ids are ignored. With `dedupe`, in the same
   * write: the send ids in `acked` are marked acked at `at`; those in `forget` are forgotten.
   */
  remove(
    ids: readonly string[],
    dedupe?: { acked: readonly string[]; forget: readonly string[]; at: number },
  ): Promise<void>
  /** Records failed attempts of pending entries in one batch. Unknown ids are ignored. */
  update(updates: readonly JournalUpdate[]): Promise<void>
  /** Moves pending entries to the dead letters in one batch. */
  bury(letters: readonly DeadLetter[]): Promise<void>
  /** Pending entries in id order with id > `after` (and id ≤ `until`), at most `limit`. */
  pending(options: { after?: string; until?: string; limit: number }): Promise<JournalEntry[]>
  /** Dead letters in id order with id > `after`, at most `limit` (default: all). */
  dead(options?: { after?: string; limit?: number }): Promise<DeadLetter[]>
  /**
   * Moves dead letters back to pending with attempts reset to 0 and no error; returns the entries
   * that were moved, as they now are, in id order (ids that are not dead letters are skipped).
   */
  replay(ids: readonly string[]): Promise<JournalEntry[]>
  /** Deletes dead letters; returns how many were deleted. */
  purgeDead(ids: readonly string[]): Promise<number>
  /**
   * The identity of the sender that owns this journal, announced to workers in WELCOME (their
   * dedupe stores key on it): 32 lower-case hex digits, the same for the journal's whole life.
   * Optional: without it a `LevelJournal` keeps the id in a `SENDER_ID` file in its directory,
   * and any other journal gets a new id each time its sender opens.
   */
  senderId?(): Promise<string>
  /**
   * Makes `id` (32 lower-case hex digits) this journal's sender id from now on, across restarts
   * for a persistent journal: the passive node of a sender pair takes the pair's id from the
   * active (docs/pair.md, section 6.2). Optional, as `senderId()`.
   */
  adoptSenderId?(id: string): Promise<void>
  /** The greatest id ever stored (pending, dead or acked), so ids stay unique across restarts. */
  lastId(): Promise<string | undefined>
  stats(): Promise<JournalStats>
  /**
   * Stores entries that are due later (each has `notBefore`): not returned by `pending()` nor
   * counted in `stats().pending` until promoted. An id scheduled already is replaced.
   */
  schedule?(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void>
  /** Scheduled entries with `notBefore <= until`, earliest first (ties in id order), at most `limit`. */
  due?(options: { until: number; limit: number }): Promise<JournalEntry[]>
  /** The earliest `notBefore` among scheduled entries; undefined when there is none. */
  nextDue?(): Promise<number | undefined>
  /**
   * Moves scheduled entries (as returned by `due()`; only their ids are read) to pending in one
   * write, as they are stored: afterwards `pending()`, `remove()`, `update()` and `bury()` see
   * them as if `append()` had written them. Ids that are not scheduled (any more: unscheduled
   * meanwhile) are ignored; resolves with the ids moved, in the order given.
   */
  promote?(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<string[]>
  /** Deletes scheduled entries by id (not pending ones); resolves with the ids that were deleted. */
  unschedule?(ids: readonly string[]): Promise<string[]>
  /**
   * The record of each send id (undefined: unknown or forgotten), in the order given.
   *
   * An entry appended or scheduled with a `dedupeId` writes its record (`{ id }`, not acked) in
   * the same write; `update()`, `bury()`, `replay()` and `promote()` keep it; `purgeDead()` deletes
   * the records of the dead letters it deletes.
   */
  dedupeLookup?(dedupeIds: readonly string[]): Promise<(DedupeRecord | undefined)[]>
  /** Forgets the send ids of messages acked before `before`; resolves with how many were forgotten. */
  dedupeForget?(before: number): Promise<number>
}
