import { mkdir } from "node:fs/promises"
import { resolve } from "node:path"
import { Level } from "level"
import { debug } from "../debug.js"
import { PirateError, errorMessage } from "../errors.js"
import { Lifecycle, type Status } from "../lifecycle.js"
import { assertKnownOptions, assertPositiveInt, describe, stripUndefined } from "../validate.js"
import {
  LEVEL_FAILURE_CODES,
  classifyLevelFailure,
  innermostLevelError,
  isDiskFull,
  levelMessage,
  type LevelFailureKind,
} from "./level-errors.js"

/** Options of {@link DedupeStore} (and of `Worker`'s `dedupe`). */
export interface DedupeOptions {
  /** Directory of the LevelDB database; created when missing. */
  path: string
  /** Completed messages remembered at most; the oldest are forgotten first. @defaultValue 100000 */
  maxEntries?: number
  /** Forget completions older than this (ms). @defaultValue 86400000 (one day) */
  maxAge?: number
}

export const DEDUPE_DEFAULTS = Object.freeze({ maxEntries: 100_000, maxAge: 86_400_000 })

const DEDUPE_OPTIONS = { path: true, maxEntries: true, maxAge: true } satisfies Record<
  keyof DedupeOptions,
  true
>

// Keys: "r:" + key → [completedAt f64 LE][reply bytes]; "t:" + completedAt (13 digits) + seq
// (8 hex) → key, the age index used to forget the oldest first.
const RECORD = "r:"
const AGE = "t:"

/**
 * Remembers which messages a worker completed, and their replies, in LevelDB: a redelivered
 * message that already completed is answered from here instead of running the handler again.
 */
export class DedupeStore {
  readonly path: string
  readonly maxEntries: number
  readonly maxAge: number
  #db: Level<string, Buffer> | undefined
  #count = 0
  #seq = 0
  readonly #life = new Lifecycle("the dedupe store")
  #pruning: Promise<void> | undefined

  constructor(options: string | DedupeOptions) {
    const o = typeof options === "string" ? { path: options } : options
    if (typeof o !== "object" || o === null || typeof o.path !== "string" || o.path === "") {
      throw new TypeError(
        `'dedupe' must be a directory path or { path, maxEntries?, maxAge? }, got ${describe(options)}`,
      )
    }
    assertKnownOptions("dedupe", o, DEDUPE_OPTIONS)
    const merged = { ...DEDUPE_DEFAULTS, ...stripUndefined(o) }
    assertPositiveInt("dedupe.maxEntries", merged.maxEntries)
    assertPositiveInt("dedupe.maxAge", merged.maxAge)
    this.path = resolve(o.path)
    this.maxEntries = merged.maxEntries
    this.maxAge = merged.maxAge
  }

  /** `new DedupeStore(options)` and {@link open} in one step. */
  static async open(options: string | DedupeOptions): Promise<DedupeStore> {
    const store = new DedupeStore(options)
    await store.open()
    return store
  }

  /** `"new"` until `open()` (and after a failed one), then `"opening"`, `"open"`, `"closing"`, `"closed"`. */
  get status(): Status {
    return this.#life.status
  }

  /** Number of completions remembered. */
  get size(): number {
    return this.#count
  }

  /**
   * Opens (creating when missing) the store. Idempotent; a failed open may be retried.
   * @throws PirateError `PIRATE_JOURNAL_LOCKED` when another worker holds it,
   *   `PIRATE_JOURNAL_CORRUPT` when it is damaged, `PIRATE_JOURNAL_FULL` when its disk is full,
   *   `PIRATE_JOURNAL_IO` for another I/O failure, `PIRATE_CLOSED` after `close()`.
   */
  open(): Promise<void> {
    return this.#life.open(() => this.#open())
  }

  async #open(): Promise<void> {
    try {
      await mkdir(this.path, { recursive: true })
    } catch (err) {
      throw this.#failure(isDiskFull(err) ? "full" : "io", err, errorMessage(err))
    }
    const db = new Level<string, Buffer>(this.path, {
      keyEncoding: "utf8",
      valueEncoding: "buffer",
    })
    try {
      await db.open()
    } catch (err) {
      throw this.#failure(classifyLevelFailure(err), innermostLevelError(err), levelMessage(err))
    }
    try {
      const keys = db.keys({ gt: RECORD, lt: "r;" })
      let count = 0
      for (let batch = await keys.nextv(1000); batch.length > 0; batch = await keys.nextv(1000))
        count += batch.length
      await keys.close()
      this.#db = db
      this.#count = count
      await this.#prune(db)
    } catch (err) {
      this.#db = undefined
      await db.close().catch(() => undefined)
      throw err instanceof PirateError
        ? err
        : this.#failure(classifyLevelFailure(err), innermostLevelError(err), levelMessage(err))
    }
  }

  /** An open failure as the `PirateError` it means (the journal's classification). */
  #failure(kind: LevelFailureKind, cause: unknown, message: string): PirateError {
    const text: Record<LevelFailureKind, string> = {
      locked: `the dedupe store in ${this.path} is held by another worker (another process, or another Worker in this one); give each worker its own directory`,
      full: `cannot open the dedupe store in ${this.path}: its disk is full (${message}); free space on that disk, then open it again`,
      corrupt: `the dedupe store in ${this.path} is damaged (${message}); move the directory away (the worker then forgets which messages it completed) and open it again`,
      io: `cannot open the dedupe store in ${this.path} (${message}); check the disk and that the directory is readable and writable, then open it again`,
    }
    return new PirateError(LEVEL_FAILURE_CODES[kind], text[kind], { cause })
  }

  /** Closes the store once a pruning in progress is done. Idempotent. */
  close(): Promise<void> {
    return this.#life.close(async () => {
      await this.#pruning
      const db = this.#db
      this.#db = undefined
      await db?.close()
    })
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** The recorded reply of a completed message, or `undefined`. */
  async get(key: string): Promise<Buffer | undefined> {
    const value = await this.#open_().get(RECORD + key)
    if (value === undefined) return undefined
    const completedAt = value.readDoubleLE(0)
    if (Date.now() - completedAt > this.maxAge) return undefined
    return value.subarray(8)
  }

  /** Records a completion (written to the OS before it resolves, so it survives a crash). */
  async put(key: string, reply: Buffer): Promise<void> {
    const db = this.#open_()
    const now = Date.now()
    const value = Buffer.allocUnsafe(8 + reply.length)
    value.writeDoubleLE(now, 0)
    reply.copy(value, 8)
    const existed = (await db.get(RECORD + key)) !== undefined
    await db.batch([
      { type: "put", key: RECORD + key, value },
      {
        type: "put",
        key:
          AGE + String(now).padStart(13, "0") + (this.#seq++ >>> 0).toString(16).padStart(8, "0"),
        value: Buffer.from(key),
      },
    ])
    if (!existed) this.#count++
    if (this.#count > this.maxEntries)
      this.#pruning ??= this.#prune(db)
        // A failed pruning is retried after the next put; the entries it left are still valid.
        .catch((err: unknown) => debug("dedupe store %s: pruning failed: %O", this.path, err))
        .finally(() => (this.#pruning = undefined))
  }

  /** Forgets the oldest completions beyond `maxEntries` and those older than `maxAge`. */
  async #prune(db: Level<string, Buffer>): Promise<void> {
    const cutoff = Date.now() - this.maxAge
    const ops: { type: "del"; key: string }[] = []
    let excess = this.#count - this.maxEntries
    for await (const [ageKey, key] of db.iterator({ gt: AGE, lt: "t;" })) {
      const at = Number(ageKey.slice(2, 15))
      if (excess <= 0 && at >= cutoff) break
      ops.push({ type: "del", key: ageKey })
      const recordKey = RECORD + key.toString()
      const record = await db.get(recordKey)
      // Only forget the record if this index entry is its latest completion.
      if (record !== undefined && record.readDoubleLE(0) <= at) {
        ops.push({ type: "del", key: recordKey })
        this.#count--
        excess--
      }
      if (ops.length >= 1000) {
        await db.batch(ops.splice(0))
      }
    }
    if (ops.length > 0) await db.batch(ops)
  }

  #open_(): Level<string, Buffer> {
    this.#life.assertOpen()
    return this.#db as Level<string, Buffer>
  }
}
