import { mkdir } from "node:fs/promises"
import { resolve } from "node:path"
import { Level } from "level"
import { PirateError, closedError, errorMessage } from "../errors.js"
import { assertPositiveInt, describe, stripUndefined } from "../validate.js"

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
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  #pruning: Promise<void> | undefined

  constructor(options: string | DedupeOptions) {
    const o = typeof options === "string" ? { path: options } : options
    if (typeof o !== "object" || o === null || typeof o.path !== "string" || o.path === "") {
      throw new TypeError(
        `'dedupe' must be a directory path or { path, maxEntries?, maxAge? }, got ${describe(options)}`,
      )
    }
    const merged = { ...DEDUPE_DEFAULTS, ...stripUndefined(o) }
    assertPositiveInt("dedupe.maxEntries", merged.maxEntries)
    assertPositiveInt("dedupe.maxAge", merged.maxAge)
    this.path = resolve(o.path)
    this.maxEntries = merged.maxEntries
    this.maxAge = merged.maxAge
  }

  /** Number of completions remembered. */
  get size(): number {
    return this.#count
  }

  open(): Promise<void> {
    return (this.#opening ??= this.#open())
  }

  async #open(): Promise<void> {
    await mkdir(this.path, { recursive: true })
    const db = new Level<string, Buffer>(this.path, {
      keyEncoding: "utf8",
      valueEncoding: "buffer",
    })
    try {
      await db.open()
    } catch (err) {
      const code =
        (err as { code?: string; cause?: { code?: string } }).cause?.code ??
        (err as { code?: string }).code
      if (code === "LEVEL_LOCKED") {
        throw new PirateError(
          "PIRATE_JOURNAL_LOCKED",
          `the dedupe store at ${this.path} is held by another worker; give each worker its own directory`,
          { cause: err },
        )
      }
      throw new PirateError(
        "PIRATE_JOURNAL_CORRUPT",
        `cannot open the dedupe store at ${this.path}: ${errorMessage(err)}`,
        {
          cause: err,
        },
      )
    }
    this.#db = db
    const keys = db.keys({ gt: RECORD, lt: "r;" })
    for (let batch = await keys.nextv(1000); batch.length > 0; batch = await keys.nextv(1000))
      this.#count += batch.length
    await keys.close()
    await this.#prune()
  }

  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      await this.#opening?.catch(() => undefined)
      await this.#pruning
      await this.#db?.close()
    })())
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
      this.#pruning ??= this.#prune().finally(() => (this.#pruning = undefined))
  }

  /** Forgets the oldest completions beyond `maxEntries` and those older than `maxAge`. */
  async #prune(): Promise<void> {
    const db = this.#open_()
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
    if (this.#closing) throw closedError("the dedupe store")
    if (!this.#db) throw new PirateError("PIRATE_NOT_OPEN", "the dedupe store is not open")
    return this.#db
  }
}
