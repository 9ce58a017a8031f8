/**
 * New messages on their way into the journal. A send taken into the window is journaled (group
 * commit) and becomes ready once written; a send spilled to disk is journaled as backlog, held in
 * memory only until written. What becomes of each when its write is done, or has failed.
 */
import type { PirateError } from "../../../lib/errors.js"
import type { Durability, JournalEntry } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"
import type { AppendItem } from "./lanes.js"
import { message, type Message } from "./message.js"

/** Settled at once: with durability "memory" a send is accepted before its write. */
export const ACCEPTED = Promise.resolve()

/** What the intake needs of the core. */
export interface IntakeHost {
  readonly admission: Admission
  readonly durability: Durability
  append(item: AppendItem): void
  /** The greatest id given to a message that went into the window (not to disk). */
  lastWindowId(): string | undefined
  /** Puts a message into the window. */
  hold(m: Message): void
  makeReady(m: Message): void
  /** The message left the window. */
  finish(m: Message): void
  /** Backlog was written: page it in if the window has room. */
  pokePager(): void
  checkDrained(): void
  error(err: Error): void
}

export class Intake {
  readonly #h: IntakeHost

  constructor(host: IntakeHost) {
    this.#h = host
  }

  /**
   * Journals a new message (`m` when it is in the window, undefined for a spill): `ACCEPTED` at
   * once with durability "memory", else a promise that resolves with its id once written.
   */
  journal(m: Message | undefined, id: string, payload: Buffer, at: number): Promise<unknown> {
    const entry: JournalEntry = { id, payload, attempts: 0, enqueuedAt: at }
    if (this.#h.durability === "memory") {
      this.#h.append({ entry, message: m, settle: undefined })
      return ACCEPTED
    }
    return new Promise<string>((resolve, reject) =>
      this.#h.append({
        entry,
        message: m,
        settle: (err) => (err ? reject(err) : resolve(id)),
      }),
    )
  }

  /** A send that waits on disk: journaled, counted as backlog, not kept in memory. */
  spill(id: string, frame: Buffer): Promise<string> {
    const adm = this.#h.admission
    const last = this.#h.lastWindowId()
    // The first message of a new backlog: every message in memory is older than it, so the
    // backlog is exactly what lies after the newest of them.
    if (!adm.backlogActive && last !== undefined)
      if (adm.after === undefined || last > adm.after) adm.after = last
    adm.spilling++
    adm.spillingBytes += frame.length
    const accepted = this.journal(undefined, id, frame, Date.now())
    return accepted === ACCEPTED ? Promise.resolve(id) : (accepted as Promise<string>)
  }

  appended(items: AppendItem[]): void {
    const adm = this.#h.admission
    for (const { entry, message: m, settle } of items) {
      if (m) {
        if (m.state === "appending") this.#h.makeReady(m)
      } else {
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
    const kept = h.durability === "memory"
    for (const { entry, message: m, settle } of items) {
      if (!m) {
        h.admission.spilling--
        h.admission.spillingBytes -= entry.payload.length
        if (kept) {
          const back = message({
            ...entry,
            attempt: 0,
            t0: performance.now(),
            state: "ready",
            durable: false,
          })
          h.hold(back)
          h.makeReady(back)
        }
      } else if (m.state === "appending") {
        if (kept) {
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
    if (kept) h.error(err)
    h.admission.admit()
    h.checkDrained()
  }
}
