/**
 * The journal lanes: new messages go to the journal in group commits (one write for every send of
 * a turn of the event loop), and acks, failed attempts and dead letters in batched changes. A
 * change that cannot be written is kept and retried, so an ack is never dropped because the disk
 * was full for a while.
 */
import { TAKES_SPLIT_BODIES, joinBody, prefixOf } from "../../../lib/body.js"
import { debug } from "../../../lib/debug.js"
import { PirateError, errorCode, errorMessage } from "../../../lib/errors.js"
import type {
  DeadLetter,
  Journal,
  JournalEntry,
  JournalUpdate,
} from "../../../lib/journal/types.js"
import type { Message } from "./message.js"

/** A new message on its way to the journal. */
export interface AppendItem {
  entry: JournalEntry
  /** The message in memory; absent for a send that waits on disk (backlog). */
  message: Message | undefined
  /** Resolved once written, or rejected; absent when the caller did not wait (durability "memory"). */
  settle: ((err: Error | undefined) => void) | undefined
  /** A spilled send kept in memory (see `Intake`): told where its write is. */
  kept?: Kept | undefined
  /** A send due later, for the journal's scheduled store (see `Scheduler`). */
  scheduled?: boolean
}

/** A spilled send kept in memory: its own copy, and where its write is. */
export interface Kept {
  entry: JournalEntry
  state: "writing" | "written" | "failed"
}

export interface LanesHost {
  /** A batch was written. */
  appended(items: AppendItem[]): void
  /** A batch could not be written; `err` is a `PirateError` naming the journal. */
  appendFailed(items: AppendItem[], err: PirateError): void
  /** Changes could not be written and will be retried; nobody waits for them. */
  changeFailed(err: PirateError): void
  /** Both lanes are idle. */
  idle(): void
}

const RETRY_FIRST = 50
const RETRY_MAX = 2000
/**
 * Acks are written in batches of up to this many, waiting up to GATHER_MS for them to gather:
 * each journal write costs 100 µs or more of CPU however small it is (its bitmaps, state record
 * and LevelDB batch), and an ack that is not written yet only means a redelivery after a crash
 * (which the dedupe of workers absorbs). A draining sender writes its acks every few ms either
 * way; 2 048 instead of 512 made those writes 40 % fewer.
 */
const GATHER = 2048
const GATHER_MS = 4

export class JournalLanes {
  readonly #journal: Journal
  readonly #sync: boolean
  readonly #host: LanesHost
  /** The journal wants whole bodies (see lib/body.ts). */
  readonly #whole: boolean
  #appendQueue: AppendItem[] = []
  #appending: Promise<void> | undefined
  #removes: string[] = []
  /** Send ids of acked messages (marked acked with the removals), and of cancelled ones (forgotten). */
  #acked: string[] = []
  #forget: string[] = []
  #updates: JournalUpdate[] = []
  #buries: DeadLetter[] = []
  #changing: Promise<void> | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #wakeRetry: (() => void) | undefined
  #wakeGather: (() => void) | undefined
  #closing = false

  constructor(journal: Journal, sync: boolean, host: LanesHost) {
    this.#journal = journal
    this.#whole = !(TAKES_SPLIT_BODIES in journal)
    this.#sync = sync
    this.#host = host
  }

  get idle(): boolean {
    return this.#appending === undefined && this.#changing === undefined
  }

  append(item: AppendItem): void {
    this.#appendQueue.push(item)
    this.#appending ??= this.#appendLoop()
  }

  /**
   * Deletes an acked (or cancelled: `forget`) message; its send id, if it has one, is marked acked
   * (or forgotten) in the same write.
   */
  remove(id: string, dedupeId?: string, forget = false): void {
    this.#removes.push(id)
    if (dedupeId !== undefined) (forget ? this.#forget : this.#acked).push(dedupeId)
    if (this.#removes.length >= GATHER) this.#wakeGather?.()
    this.#startChanges()
  }

  update(u: JournalUpdate): void {
    this.#updates.push(u)
    this.#startChanges()
  }

  bury(d: DeadLetter): void {
    this.#buries.push(d)
    this.#startChanges()
  }

  #startChanges(): void {
    this.#changing ??= this.#changeLoop()
  }

  /** Resolves once everything queued so far is written (or given up on while closing). */
  async flush(): Promise<void> {
    while (this.#appending ?? this.#changing) {
      await this.#appending
      await this.#changing
    }
  }

  /** Stops retrying failed changes after one more try; then `flush()` settles. */
  close(): void {
    this.#closing = true
    this.#wakeRetry?.()
    this.#wakeGather?.()
  }

  sizes(): Record<string, number> {
    return {
      appendQueue: this.#appendQueue.length,
      changeQueue: this.#removes.length + this.#updates.length + this.#buries.length,
    }
  }

  async #appendLoop(): Promise<void> {
    try {
      while (this.#appendQueue.length > 0) {
        // Let the sends of this turn of the event loop gather into one write: the callers whose
        // sends the last write resolved send again in the microtasks that follow it.
        await new Promise<void>((r) => setImmediate(r))
        const batch = this.#appendQueue
        this.#appendQueue = []
        // Sends due later go to the scheduled store, in a write of their own.
        let later: AppendItem[] | undefined
        for (const i of batch) if (i.scheduled === true) (later ??= []).push(i)
        if (later === undefined) await this.#write(batch, false)
        else {
          const now = batch.filter((i) => i.scheduled !== true)
          if (now.length > 0) await this.#write(now, false)
          await this.#write(later, true)
        }
      }
    } finally {
      this.#appending = undefined
      if (this.idle) this.#host.idle()
    }
  }

  /** Writes a group commit (to the scheduled store: `later`) and tells the host how it went. */
  async #write(batch: AppendItem[], later: boolean): Promise<void> {
    const entries = batch.map((i) => (this.#whole ? wholeEntry(i.entry) : i.entry))
    try {
      if (later) await this.#journal.schedule?.(entries, { sync: this.#sync })
      else await this.#journal.append(entries, { sync: this.#sync })
    } catch (err) {
      this.#host.appendFailed(batch, journalWriteError(err))
      return
    }
    this.#host.appended(batch)
  }

  #gather(): Promise<void> {
    if (this.#closing) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, GATHER_MS)
      function done(): void {
        clearTimeout(timer)
        resolve()
      }
      this.#wakeGather = done
    }).finally(() => {
      this.#wakeGather = undefined
    })
  }

  async #changeLoop(): Promise<void> {
    // Let the acks of this turn of the event loop gather into one batch.
    await new Promise<void>((r) => setImmediate(r))
    let wait = RETRY_FIRST
    try {
      while (this.#removes.length + this.#updates.length + this.#buries.length > 0) {
        // Only acks, and few: let more gather (failed attempts and dead letters go at once).
        if (this.#updates.length + this.#buries.length === 0 && this.#removes.length < GATHER)
          await this.#gather()
        const removes = this.#removes
        const updates = this.#updates
        const buries = this.#buries
        const acked = this.#acked
        const forget = this.#forget
        this.#removes = []
        this.#updates = []
        this.#buries = []
        this.#acked = []
        this.#forget = []
        try {
          // Each step is idempotent, so a retry may repeat one that had been written.
          if (updates.length > 0) await this.#journal.update(updates)
          if (buries.length > 0) await this.#journal.bury(buries)
          if (removes.length > 0) {
            if (acked.length + forget.length === 0) await this.#journal.remove(removes)
            else await this.#journal.remove(removes, { acked, forget, at: Date.now() })
          }
          wait = RETRY_FIRST
        } catch (err) {
          const e = journalWriteError(err)
          if (this.#closing) {
            debug("journal changes given up on at close: %s", e.message)
            this.#host.changeFailed(e)
            return
          }
          // Keep them, in order, ahead of what came meanwhile, and try again.
          this.#removes = removes.concat(this.#removes)
          this.#acked = acked.concat(this.#acked)
          this.#forget = forget.concat(this.#forget)
          this.#updates = updates.concat(this.#updates)
          this.#buries = buries.concat(this.#buries)
          if (wait === RETRY_FIRST) this.#host.changeFailed(e) // once per episode
          await new Promise<void>((resolve) => {
            this.#wakeRetry = resolve
            this.#retryTimer = setTimeout(resolve, wait)
          })
          clearTimeout(this.#retryTimer)
          this.#wakeRetry = undefined
          wait = Math.min(wait * 2, RETRY_MAX)
        }
      }
    } finally {
      this.#changing = undefined
      if (this.idle) this.#host.idle()
    }
  }
}

/** A failed journal write as a `PirateError` (kept as it is when it already is one). */
export function journalWriteError(err: unknown): PirateError {
  if (err instanceof PirateError) return err
  const code = errorCode(err)
  const text = errorMessage(err)
  if (code === "ENOSPC" || /ENOSPC|no space left|disk full/i.test(text))
    return new PirateError(
      "PIRATE_JOURNAL_FULL",
      `journal write failed, the disk is full: ${text}`,
      {
        cause: err,
      },
    )
  return new PirateError("PIRATE_JOURNAL_IO", `journal write failed: ${text}`, { cause: err })
}

/** The entry with its body whole (a split body joined, see lib/body.ts). */
function wholeEntry(entry: JournalEntry): JournalEntry {
  return prefixOf(entry.payload) ? { ...entry, payload: joinBody(entry.payload) } : entry
}
