/**
 * The LevelDB database under a `LevelJournal`, as its calls use it: opened once, closed once,
 * writes one at a time, reads tracked, and opened again before the next write after a write
 * failed. What is read and written is the journal's (level.ts); when the database is (re)opened
 * and what its failures mean are this file's.
 */
import { mkdir } from "node:fs/promises"
import { debug } from "../debug.js"
import { PirateError, closedError, errorMessage } from "../errors.js"
import { Lifecycle, type Status } from "../lifecycle.js"
import type { Db } from "./level-db.js"
import { fromLevelDb, isDiskFull, levelCode, levelFailure } from "./level-errors.js"

export interface HandleHooks {
  /** Opens the database and takes what the journal keeps of it: at `open()` and after a failed write. */
  load(doing: "open" | "reopen"): Promise<Db>
  /** The database is about to close, every read and write done. */
  closing(): Promise<void>
}

export class LevelHandle {
  readonly #path: string
  readonly #hooks: HandleHooks
  readonly #life = new Lifecycle("the journal")
  #db: Db | undefined
  // Set when a write failed. LevelDB may then hold a torn record at the end of its log (a record
  // written after it would sit behind the tear, where the next open stops reading or this
  // journal's log check refuses to open), or a sticky background error (a table write that hit a
  // full disk fails every later write, even once there is room). So the next write first closes
  // the database and opens it again: LevelDB then recovers the log into a table, dropping the
  // torn record as a crash would, and starts a fresh log.
  #stale = false
  #reopening: Promise<Db> | undefined
  // Writes run one at a time: each reads what it must (existence, old values) and writes the
  // counters in its own batch, so the counters on disk always match the entries.
  #tail: Promise<unknown> = Promise.resolve()
  readonly #reads = new Set<Promise<unknown>>()

  /** @param path - the journal's directory */
  constructor(path: string, hooks: HandleHooks) {
    this.#path = path
    this.#hooks = hooks
  }

  get status(): Status {
    return this.#life.status
  }

  /** True once `close()` was called. */
  get closing(): boolean {
    return this.#life.closeRequested
  }

  /** See `LevelJournal.open()`. */
  open(): Promise<void> {
    return this.#life.open(() => this.#open())
  }

  /** Closes the database once the writes in progress are done. Idempotent. */
  close(): Promise<void> {
    return this.#life.close(() => this.#close())
  }

  /** The next write reopens the database first (its write failed: see `#stale`). */
  markStale(): void {
    this.#stale = true
  }

  /** Waits for an open or a reopen in progress; throws unless the journal is open. */
  async ready(): Promise<void> {
    if (this.#life.status === "opening") await this.#life.ready().catch(() => undefined)
    await this.#reopening?.catch(() => undefined)
    this.#life.assertOpen()
  }

  /**
   * Runs one write after the previous one (see `#tail`), on a reopened database after a failed
   * write. When the journal is open it queues the write synchronously, so a `close()` called next
   * waits for it.
   */
  async write<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    if (this.#life.status !== "open" || this.closing) await this.ready()
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
  async read<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    for (;;) {
      const db = this.#db
      if (this.#life.status === "open" && !this.closing && db !== undefined && !this.#reopening) {
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
      await this.ready()
      if (this.#db === undefined) await this.#reopen() // the last one failed: try again
    }
  }

  /** A failed open may be retried (e.g. once the other sender exits): see `Lifecycle`. */
  async #open(): Promise<void> {
    await mkdir(this.#path, { recursive: true }).catch((err: unknown) => {
      throw new PirateError(
        isDiskFull(err) ? "PIRATE_JOURNAL_FULL" : "PIRATE_JOURNAL_IO",
        `cannot create the journal directory ${this.#path}: ${errorMessage(err)}; check the path, its permissions and the space left on its disk`,
        { cause: err },
      )
    })
    this.#db = await this.#hooks.load("open")
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
          debug("journal %s: reopening LevelDB after a failed write", this.#path)
          await Promise.allSettled(this.#reads)
          await old.close().catch(() => undefined)
        }
        const db = await this.#hooks.load("reopen")
        this.#db = db
        this.#stale = false
        return db
      } finally {
        this.#reopening = undefined
      }
    })())
  }

  /** Runs after an open in progress has settled (see `Lifecycle.close`). */
  async #close(): Promise<void> {
    await this.#tail
    await this.#reopening?.catch(() => undefined)
    await Promise.allSettled(this.#reads)
    const db = this.#db
    this.#db = undefined
    await this.#hooks.closing()
    if (db !== undefined) await db.close()
  }

  #operational(err: unknown, doing: "read" | "write to"): unknown {
    if (err instanceof PirateError) return err
    if (levelCode(err) === "LEVEL_DATABASE_NOT_OPEN" && this.closing)
      return closedError("the journal")
    if (isDiskFull(err) || fromLevelDb(err)) return levelFailure(this.#path, doing, err)
    return err
  }
}
