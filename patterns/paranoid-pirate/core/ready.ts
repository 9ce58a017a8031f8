/**
 * The ready queue (messages waiting for a worker) and the delay queue (messages waiting for their
 * retry backoff). Both drop what leaves them early (a cancelled request) without keeping it.
 */
import { Fifo } from "../../../lib/fifo.js"
import { byId, type Message } from "./message.js"

/**
 * Ready messages: `#front` (requeued, served first; a stack whose top is the next one) then
 * `#fifo` in send order. A message that leaves while ready (cancelled) stays in place as a stale
 * entry and is skipped when taken; once stale entries outnumber live ones they are swept out, so
 * the queue never holds more than twice what is ready.
 */
export class ReadyQueue {
  #front: Message[] = []
  #fifo = new Fifo<Message>()
  #live = 0
  #stale = 0

  /** Ready messages. */
  get size(): number {
    return this.#live
  }

  /** Entries held, stale ones included (for tests of bounded memory). */
  get held(): number {
    return this.#front.length + this.#fifo.length
  }

  push(m: Message): void {
    m.state = "ready"
    this.#fifo.push(m)
    this.#live++
  }

  /** Puts messages back at the front, the oldest first (a lost worker's, a failed attempt's). */
  pushFront(list: Message[]): void {
    list.sort(byId)
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i] as Message
      m.state = "ready"
      this.#front.push(m)
    }
    this.#live += list.length
  }

  /** Puts a message just taken back at the very front (it did not fit in a batch). */
  putBack(m: Message): void {
    this.#front.push(m)
    this.#live++
  }

  /** Takes the next ready message. */
  take(): Message | undefined {
    for (let m = this.#front.pop(); m; m = this.#front.pop()) {
      if (m.state === "ready") return this.#taken(m)
      this.#stale--
    }
    for (let m = this.#fifo.shift(); m; m = this.#fifo.shift()) {
      if (m.state === "ready") return this.#taken(m)
      this.#stale--
    }
    return undefined
  }

  /** A ready message left without being taken (its state is no longer "ready"). */
  discard(): void {
    this.#live--
    this.#stale++
    if (this.#stale > this.#live) this.#sweep()
  }

  #taken(m: Message): Message {
    this.#live--
    return m
  }

  #sweep(): void {
    this.#front = this.#front.filter((m) => m.state === "ready")
    const fifo = new Fifo<Message>()
    for (const m of this.#fifo.drain()) if (m.state === "ready") fifo.push(m)
    this.#fifo = fifo
    this.#stale = 0
  }
}

/** Messages waiting for a time (retry backoff), with one timer for the earliest. */
export class DelayQueue {
  readonly #due: (list: Message[]) => void
  #items = new Set<Message>()
  #timer: NodeJS.Timeout | undefined
  #at = Infinity

  /** @param due - called with the messages whose time has come */
  constructor(due: (list: Message[]) => void) {
    this.#due = due
  }

  get size(): number {
    return this.#items.size
  }

  add(m: Message, at: number): void {
    m.state = "delayed"
    m.notBefore = at
    this.#items.add(m)
    if (at < this.#at) this.#arm(at)
  }

  delete(m: Message): boolean {
    return this.#items.delete(m)
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#at = Infinity
  }

  #arm(at: number): void {
    clearTimeout(this.#timer)
    this.#at = at
    this.#timer = setTimeout(() => this.#release(), Math.max(0, at - Date.now()))
  }

  #release(): void {
    this.#at = Infinity
    this.#timer = undefined
    const now = Date.now()
    const due: Message[] = []
    let next = Infinity
    for (const m of this.#items) {
      const at = m.notBefore ?? 0
      if (at <= now) {
        this.#items.delete(m)
        m.notBefore = undefined
        due.push(m)
      } else if (at < next) next = at
    }
    if (next < Infinity) this.#arm(next)
    if (due.length > 0) this.#due(due)
  }
}
