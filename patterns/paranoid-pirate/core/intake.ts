/**
 * New messages on their way into the journal. A send taken into the window is journaled (group
 * commit) and becomes ready once written; a send spilled to disk is journaled as backlog, held in
 * memory until written and, while there is room, kept after (see KEEP_WINDOWS). What becomes of
 * each when its write is done, or has failed.
 */
import { PirateError, errorMessage } from "../../../lib/errors.js"
import { Fifo } from "../../../lib/fifo.js"
import type { Durability, JournalEntry } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"
import type { AppendItem, Kept } from "./lanes.js"
import { fromEntry, newEntry, withPayload, type Message, type Schedule } from "./message.js"

/**
 * A persistent sender keeps the oldest spilled sends in memory, up to this many windows of
 * messages and within `windowBytes` of payload together with the window, so that a burst larger
 * than the window is paged in without reading it back from the journal.
 * A kept send costs its payload and about 300 bytes beside it (measured: 40 000 kept sends of
 * 256 bytes raised the peak RSS of a million offline sends by about 20 MB). Large messages are
 * not kept (see KEEP_MAX): the window holds `windowBytes` of them already.
 */
export const KEEP_WINDOWS = 4

/** Only small sends are kept: reading a large one back costs little beside its bytes. */
const KEEP_MAX = 16 * 1024
const SLAB = 64 * 1024

/** Settled at once: with durability "memory" a send is accepted before its write. */
export const ACCEPTED = Promise.resolve()

/** What the intake needs of the core. */
export interface IntakeHost {
  readonly admission: Admission
  readonly durability: Durability
  /** Resolves once the writes so far reached a pair's passive (see `DispatcherSettings`). */
  replicated(): Promise<void> | undefined
  /** Spilled sends kept in memory at most (see `KEEP_WINDOWS`). */
  readonly keep: number
  /** Payload bytes in memory at most: the window's and the kept spills' together. */
  readonly windowBytes: number
  inWindowBytes(): number
  append(item: AppendItem): void
  /** The greatest id given to a message that went into the window (not to disk). */
  lastWindowId(): string | undefined
  /** Puts a message into the window. */
  hold(m: Message): void
  /** The message is written: it becomes ready, or waits for its `notBefore` or its key. */
  makeReady(m: Message): void
  /** The message left the window. */
  finish(m: Message): void
  /** A send for the scheduled store was written (`ok`) or not. */
  scheduledWritten(entry: JournalEntry, ok: boolean): void
  /** Puts an entry that is due later into the window (its write to the scheduled store failed). */
  holdScheduled(entry: JournalEntry): void
  /** A send with a send id was written (`ok`) or not (see `SendIds`). */
  sendIdWritten(dedupeId: string, ok: boolean): void
  /** Backlog was written: page it in if the window has room. */
  pokePager(): void
  checkDrained(): void
  error(err: Error): void
}

export class Intake {
  readonly #h: IntakeHost
  /**
   * The oldest spilled sends, kept in memory as they were written (a young backlog is paged in
   * from here, not read back). A spill is kept only while every older one is, so the kept ones
   * are always the head of the backlog, in id order.
   */
  #kept = new Fifo<Kept>()
  #keptBytes = 0
  #slab = Buffer.alloc(0)
  #slabUsed = 0

  constructor(host: IntakeHost) {
    this.#h = host
  }

  /** Spilled sends kept in memory (the head of the backlog), written or not. */
  get kept(): number {
    return this.#kept.length
  }

  /** Payload bytes of the spilled sends kept in memory. */
  get keptBytes(): number {
    return this.#keptBytes
  }

  /**
   * Up to `limit` kept sends that are written, oldest first, left in place: the next page of the
   * backlog. Stops at one still being written (the pager is poked again once it is).
   */
  keptPage(limit: number): JournalEntry[] {
    const page: JournalEntry[] = []
    for (const k of this.#kept.items()) {
      if (page.length >= limit || k.state === "writing") break
      if (k.state === "written") page.push(k.entry)
    }
    return page
  }

  /** The pager took the kept sends up to `lastId` (and those that failed among them). */
  dropKept(lastId: string): void {
    for (let k = this.#kept.peek(); k && k.entry.id <= lastId; k = this.#kept.peek()) this.#unkeep()
  }

  /**
   * Journals a new message (`m` when it is in the window, undefined for a spill): `ACCEPTED` at
   * once with durability "memory", else a promise that resolves with its id once written.
   */
  journal(
    m: Message | undefined,
    id: string,
    payload: Buffer,
    at: number,
    schedule?: Schedule,
  ): Promise<unknown> {
    return this.#write(newEntry(id, payload, at, schedule), m, false)
  }

  /** Journals a send that is due later in the journal's scheduled store (see `Scheduler`). */
  later(id: string, payload: Buffer, schedule: Schedule): Promise<unknown> {
    return this.#write(newEntry(id, payload, Date.now(), schedule), undefined, false, true)
  }

  #write(
    entry: JournalEntry,
    m: Message | undefined,
    keep: boolean,
    later = false,
  ): Promise<unknown> {
    const item: AppendItem = { entry, message: m, settle: undefined, kept: undefined }
    if (later) item.scheduled = true
    if (keep) {
      // A copy (see #copy): the journal writes the sender's own buffer, which is let go after.
      const kept: Kept = {
        entry: withPayload(entry, this.#copy(entry.payload)),
        state: "writing",
      }
      item.kept = kept
      this.#kept.push(kept)
      this.#keptBytes += entry.payload.length
    }
    if (this.#h.durability === "memory") {
      this.#h.append(item)
      return ACCEPTED
    }
    return new Promise<string>((resolve, reject) => {
      item.settle = (err) => (err ? reject(err) : resolve(entry.id))
      this.#h.append(item)
    })
  }

  /** A send that waits on disk: journaled, counted as backlog, kept in memory while there is room. */
  spill(id: string, frame: Buffer, schedule?: Schedule): Promise<string> {
    const adm = this.#h.admission
    const last = this.#h.lastWindowId()
    // The first message of a new backlog: every message in memory is older than it, so the
    // backlog is exactly what lies after the newest of them.
    if (!adm.backlogActive && last !== undefined)
      if (adm.after === undefined || last > adm.after) adm.after = last
    // Kept while every older spill is (nothing waits only on disk) and there is room.
    const keep =
      frame.length <= KEEP_MAX &&
      adm.count - adm.aside + adm.spilling === this.#kept.length &&
      this.#kept.length < this.#h.keep &&
      this.#keptBytes + frame.length + this.#h.inWindowBytes() <= this.#h.windowBytes
    adm.spilling++
    adm.spillingBytes += frame.length
    const accepted = this.#write(newEntry(id, frame, Date.now(), schedule), undefined, keep)
    return accepted === ACCEPTED ? Promise.resolve(id) : (accepted as Promise<string>)
  }

  /**
   * A kept payload is copied into a slab of its own: the sender's buffers, kept for a while among
   * many that are not, would scatter the heap and raise the process's memory far beyond their
   * size (measured: 10 000 kept buffers of 256 bytes raised the peak RSS of a million offline sends
   * by 85 MB; copied, 40 000 raise it by 20 MB). Slabs are small enough to come from memory the
   * process has already touched (a fresh megabyte page-faults, at about 0.5 µs per 256 bytes).
   */
  #copy(frame: Buffer): Buffer {
    if (this.#slabUsed + frame.length > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB)
      this.#slabUsed = 0
    }
    const start = this.#slabUsed
    this.#slabUsed += frame.copy(this.#slab, start)
    return this.#slab.subarray(start, this.#slabUsed)
  }

  #unkeep(): void {
    const k = this.#kept.shift()
    if (k) this.#keptBytes -= k.entry.payload.length
  }

  /**
   * A group commit is written. With a pair's replicated durability its messages become ready and
   * their sends resolve once the passive has them too; the next group commit does not wait for
   * that (the lanes go on), and these wait in the order they were written.
   */
  appended(items: AppendItem[]): void {
    const replicated = this.#h.replicated()
    if (replicated === undefined) this.#written(items)
    else
      replicated.then(
        () => this.#written(items),
        (err: unknown) =>
          this.appendFailed(
            items,
            err instanceof PirateError ? err : new PirateError("PIRATE_CLOSED", errorMessage(err)),
          ),
      )
  }

  #written(items: AppendItem[]): void {
    const adm = this.#h.admission
    for (const item of items) {
      const { entry, message: m, settle } = item
      if (entry.dedupeId !== undefined) this.#h.sendIdWritten(entry.dedupeId, true)
      if (m) {
        if (m.state === "appending") this.#h.makeReady(m)
      } else if (item.scheduled === true) this.#h.scheduledWritten(entry, true)
      else {
        if (item.kept) item.kept.state = "written"
        adm.spilling--
        adm.spillingBytes -= entry.payload.length
        adm.count++
        adm.bytes += entry.payload.length
        if (adm.until === undefined || entry.id > adm.until) adm.until = entry.id
      }
      settle?.(undefined)
    }
    this.#h.pokePager()
    adm.admit()
  }

  appendFailed(items: AppendItem[], err: PirateError): void {
    const h = this.#h
    // With durability "memory" the senders were told yes already: keep their messages in memory
    // (as durable as promised) and tell the operator; otherwise each sender gets the error.
    const stay = h.durability === "memory"
    for (const item of items) {
      const { entry, message: m, settle } = item
      // Kept in memory (durability "memory": accepted already), the send id stays known there.
      if (entry.dedupeId !== undefined && !stay) this.#h.sendIdWritten(entry.dedupeId, false)
      if (item.scheduled === true) {
        h.scheduledWritten(entry, false)
        if (stay) h.holdScheduled(entry)
      } else if (!m) {
        if (item.kept) item.kept.state = "failed"
        h.admission.spilling--
        h.admission.spillingBytes -= entry.payload.length
        if (stay) {
          const back = fromEntry(entry, false)
          back.t0 = performance.now()
          back.notBefore = entry.notBefore
          h.hold(back)
          h.makeReady(back)
        }
      } else if (m.state === "appending") {
        if (stay) {
          m.durable = false
          h.makeReady(m)
        } else {
          const waiter = m.waiter
          h.finish(m)
          waiter?.reject(err)
        }
      }
      settle?.(err)
    }
    if (stay) h.error(err)
    // Failed spills at the head of the kept ones are not backlog: let the next ones be paged.
    for (let k = this.#kept.peek(); k?.state === "failed"; k = this.#kept.peek()) this.#unkeep()
    h.pokePager()
    h.admission.admit()
    h.checkDrained()
  }
}
