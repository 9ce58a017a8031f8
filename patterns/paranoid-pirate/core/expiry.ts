/**
 * Time to live in the window: a sweep, armed for the earliest `expiresAt` among the messages in
 * memory (at most every 100 ms), moves those that wait (ready, delayed, parked behind their key)
 * and have expired to the dead letters; one in flight is left to finish. A message is also
 * checked when it is taken for dispatch, when an attempt fails and when it is paged in (see
 * `Sessions`), so the sweep matters only for messages that nothing takes.
 */
import type { Message } from "./message.js"

export interface ExpiryHost {
  /** Visits every message in the window that waits: ready, delayed, parked. */
  forEachWaiting(visit: (m: Message) => void): void
  /** Visits every message in flight. */
  forEachInFlight(visit: (m: Message) => void): void
  /** A waiting message expired: out of its queue, to the dead letters. */
  expire(m: Message): void
  closed(): boolean
}

export class ExpirySweep {
  readonly #h: ExpiryHost
  /** The earliest `expiresAt` the sweep is armed for. */
  #next = Infinity
  #timer: NodeJS.Timeout | undefined

  constructor(host: ExpiryHost) {
    this.#h = host
  }

  /** A message with a time to live entered the window (or became ready): sweep by then. */
  note(m: Message): void {
    if (m.expiresAt !== undefined && m.expiresAt < this.#next) this.#arm(m.expiresAt)
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#next = Infinity
  }

  #arm(at: number): void {
    clearTimeout(this.#timer)
    this.#next = at
    this.#timer = setTimeout(
      () => this.#sweep(),
      Math.min(Math.max(100, at - Date.now()), 0x7fffffff),
    )
    this.#timer.unref()
  }

  #sweep(): void {
    this.#next = Infinity
    this.#timer = undefined
    if (this.#h.closed()) return
    const now = Date.now()
    const out: Message[] = []
    let next = Infinity
    const look = (m: Message): void => {
      if (m.expiresAt === undefined) return
      if (m.expiresAt <= now) out.push(m)
      else if (m.expiresAt < next) next = m.expiresAt
    }
    this.#h.forEachWaiting(look)
    // In flight: left to finish (its ack still counts), but its time counts for the next sweep.
    this.#h.forEachInFlight((m) => {
      if (m.expiresAt !== undefined && m.expiresAt > now && m.expiresAt < next) next = m.expiresAt
    })
    for (const m of out) this.#h.expire(m)
    if (next < Infinity) this.#arm(next)
  }
}
