/**
 * Where an accepted message goes: into the window (journaled when durable), to disk as backlog
 * (`spill`), or to the journal's scheduled store (`later`). Each gets its id here, in send order,
 * and is counted as sent, for the sender and for its queue.
 */
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import { IdGenerator } from "../../../lib/journal/ids.js"
import type { Journal } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"
import type { Counters } from "./counters.js"
import { ACCEPTED, type Intake } from "./intake.js"
import { message, scheduled, type Message, type Schedule, type Waiter } from "./message.js"
import type { Queues } from "./queues.js"
import type { Scheduler } from "./scheduler.js"
import type { SendIds } from "./send-ids.js"

/** What the producer needs of the core. */
export interface ProducerHost {
  readonly journal: Journal
  readonly admission: Admission
  readonly counters: Counters
  readonly queues: Queues
  intake(): Intake
  sendIds(): SendIds
  scheduler(): Scheduler | undefined
  /** A message enters the window. */
  hold(m: Message): void
  /** A message in the window becomes ready (or waits for `notBefore`). */
  arrive(m: Message, notBefore: number | undefined): void
  /** Something is pending: the sender is not drained. */
  busy(): void
}

export class Producer {
  readonly #h: ProducerHost
  #ids = new IdGenerator()
  /** The greatest id given to a message that went into the window (not to disk). */
  lastWindowId: string | undefined

  constructor(host: ProducerHost) {
    this.#h = host
  }

  /**
   * Ids go on from `lastId`, the greatest the journal ever stored (at open); with `parity`, all
   * even or all odd (see `IdGenerator`).
   */
  startAfter(lastId: string | undefined, parity?: 0 | 1): void {
    this.#ids = new IdGenerator(lastId, parity)
  }

  /** A send admitted into the window; resolves with its id once as durable as configured. */
  accept(frame: Buffer, schedule: Schedule | undefined): Promise<string> {
    const { id, accepted } = this.enter(frame, true, undefined, frame, schedule)
    // A journaled send's promise resolves with its id: no second promise to map it.
    return accepted === ACCEPTED ? Promise.resolve(id) : (accepted as Promise<string>)
  }

  /**
   * A message enters the window: journaled (group commit) when durable and the journal is
   * persistent, else ready at once. `stored` is what to journal when it is not the payload.
   */
  enter(
    payload: Buffer,
    wantDurable: boolean,
    waiter: Waiter | undefined,
    stored = payload,
    schedule?: Schedule,
  ): { id: string; accepted: Promise<unknown> } {
    const h = this.#h
    const id = this.#ids.next()
    // Only a persistent journal keeps pending messages; a memory journal only keeps dead letters.
    const durable = wantDurable && h.journal.persistent
    const m = message({
      id,
      payload,
      attempt: 0,
      enqueuedAt: Date.now(),
      t0: performance.now(),
      state: "appending",
      durable,
    })
    scheduled(m, schedule)
    if (schedule?.dedupeId !== undefined) h.sendIds().accepted(schedule.dedupeId, id)
    m.waiter = waiter
    h.queues.state(m.queue).sent++
    h.hold(m)
    this.lastWindowId = id
    h.counters.sent++
    h.busy()
    if (schedule?.notBefore !== undefined) m.notBefore = schedule.notBefore
    if (!durable) {
      h.arrive(m, m.notBefore)
      return { id, accepted: ACCEPTED }
    }
    return { id, accepted: h.intake().journal(m, id, stored, m.enqueuedAt, schedule) }
  }

  /** A send that waits on disk (see `Intake.spill()`). */
  spill(frame: Buffer, schedule: Schedule | undefined): Promise<string> {
    const h = this.#h
    h.counters.sent++
    const q = h.queues.state(schedule?.queue ?? DEFAULT_QUEUE)
    q.sent++
    q.backlog++
    h.busy()
    const id = this.#ids.next()
    if (schedule?.dedupeId !== undefined) h.sendIds().accepted(schedule.dedupeId, id)
    return h.intake().spill(id, frame, schedule)
  }

  /** A send that is due later, to the journal's scheduled store (see `Scheduler`). */
  later(frame: Buffer, schedule: Schedule): Promise<string> {
    const h = this.#h
    h.counters.sent++
    h.queues.state(schedule.queue).sent++
    h.busy()
    h.admission.scheduling++
    h.admission.schedulingBytes += frame.length
    h.scheduler()?.writing()
    const id = this.#ids.next()
    if (schedule.dedupeId !== undefined) h.sendIds().accepted(schedule.dedupeId, id)
    const accepted = h.intake().later(id, frame, schedule)
    return accepted === ACCEPTED ? Promise.resolve(id) : (accepted as Promise<string>)
  }
}
