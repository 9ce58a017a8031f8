/**
 * The ready queue (messages waiting for a worker, highest priority first) and the delay queue
 * (messages waiting for a time: a retry backoff, or a first attempt sent with `delay`). Both drop
 * what leaves them early (a cancelled message) without keeping it.
 */
import { Fifo } from "../../../lib/fifo.js"
import { DEFAULT_PRIORITY, byId, type Message } from "./message.js"

/** Priorities run from 0 to this. */
export const MAX_PRIORITY = 9

/**
 * The ready messages of one priority: `front` (requeued, served first; a stack whose top is the
 * next one) then `fifo` in send order.
 */
class Level {
  front: Message[] = []
  fifo = new Fifo<Message>()
  live = 0
}

/**
 * Ready messages, by priority: the highest first, and within a priority the requeued ones first,
 * then send order. A message that leaves while ready (cancelled, expired) stays in place as a
 * stale entry and is skipped when taken; once stale entries outnumber live ones they are swept
 * out, so the queue never holds more than twice what is ready.
 */
export class ReadyQueue {
  /** Created on first use: a sender that never sets a priority has only the default's. */
  readonly #levels: (Level | undefined)[] = []
  readonly #default = new Level()
  /** The highest priority that may hold ready messages. */
  #top = DEFAULT_PRIORITY
  #live = 0
  #stale = 0

  constructor() {
    this.#levels[DEFAULT_PRIORITY] = this.#default
  }

  /** Ready messages. */
  get size(): number {
    return this.#live
  }

  /** Entries held, stale ones included (for tests of bounded memory). */
  get held(): number {
    let n = 0
    for (const l of this.#levels) if (l) n += l.front.length + l.fifo.length
    return n
  }

  push(m: Message): void {
    m.state = "ready"
    const l = this.#level(m.priority)
    l.fifo.push(m)
    l.live++
    this.#live++
  }

  /** Puts messages back at the front of their priority, the oldest first (a lost worker's, a failed attempt's). */
  pushFront(list: Message[]): void {
    list.sort(byId)
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i] as Message
      m.state = "ready"
      const l = this.#level(m.priority)
      l.front.push(m)
      l.live++
    }
    this.#live += list.length
  }

  /** Puts a message just taken back at the very front of its priority (it did not fit in a batch). */
  putBack(m: Message): void {
    const l = this.#level(m.priority)
    l.front.push(m)
    l.live++
    this.#live++
  }

  /** Takes the next ready message: the oldest requeued, else the oldest sent, of the highest priority. */
  take(): Message | undefined {
    if (this.#live === 0) return undefined
    for (let p = this.#top; p >= 0; p--) {
      const l = this.#levels[p]
      if (l === undefined) continue
      if (l.live === 0) {
        if (p === this.#top && p > DEFAULT_PRIORITY) this.#top--
        continue
      }
      for (let m = l.front.pop(); m; m = l.front.pop()) {
        if (m.state === "ready") return this.#taken(l, m)
        this.#stale--
      }
      for (let m = l.fifo.shift(); m; m = l.fifo.shift()) {
        if (m.state === "ready") return this.#taken(l, m)
        this.#stale--
      }
    }
    return undefined
  }

  /** Visits every ready message (a sweep for expired ones); `visit` must not change the queue. */
  forEach(visit: (m: Message) => void): void {
    for (const l of this.#levels) {
      if (l === undefined || l.live === 0) continue
      for (const m of l.front) if (m.state === "ready") visit(m)
      for (const m of l.fifo.items()) if (m.state === "ready") visit(m)
    }
  }

  /** A ready message left without being taken (its state is no longer "ready"). */
  discard(m: Message): void {
    const l = this.#levels[m.priority]
    if (l) l.live--
    this.#live--
    this.#stale++
    if (this.#stale > this.#live) this.#sweep()
  }

  #level(priority: number): Level {
    let l = this.#levels[priority]
    if (l === undefined) {
      l = new Level()
      this.#levels[priority] = l
    }
    if (priority > this.#top) this.#top = priority
    return l
  }

  #taken(l: Level, m: Message): Message {
    l.live--
    this.#live--
    return m
  }

  #sweep(): void {
    for (const l of this.#levels) {
      if (l === undefined) continue
      l.front = l.front.filter((m) => m.state === "ready")
      const fifo = new Fifo<Message>()
      for (const m of l.fifo.drain()) if (m.state === "ready") fifo.push(m)
      l.fifo = fifo
    }
    this.#stale = 0
  }
}

/**
 * Messages waiting for a time, in a binary heap by that time, with one timer for the earliest. A
 * message that leaves early is left in the heap and skipped when it comes up; the heap is rebuilt
 * once such entries outnumber the others.
 */
export class DelayQueue {
  readonly #due: (list: Message[]) => void
  #heap: { at: number; m: Message }[] = []
  #live = 0
  /** Messages waiting for their first attempt (sent with `delay`), not for a retry. */
  #first = 0
  #timer: NodeJS.Timeout | undefined
  #at = Infinity

  /** @param due - called with the messages whose time has come */
  constructor(due: (list: Message[]) => void) {
    this.#due = due
  }

  get size(): number {
    return this.#live
  }

  /** Messages waiting for their first attempt (`stats().scheduled` counts them). */
  get scheduled(): number {
    return this.#first
  }

  /** Entries held, stale ones included (for tests of bounded memory). */
  get held(): number {
    return this.#heap.length
  }

  add(m: Message, at: number): void {
    m.state = "delayed"
    m.notBefore = at
    this.#live++
    if (m.attempt === 0) this.#first++
    this.#push({ at, m })
    if (at < this.#at) this.#arm(at)
  }

  delete(m: Message): boolean {
    if (m.state !== "delayed") return false
    m.state = "done"
    this.#left(m)
    if (this.#live === 0) {
      this.#heap = []
      this.stop()
    } else if (this.#heap.length > 64 && this.#heap.length > 2 * this.#live) this.#rebuild()
    return true
  }

  /** Visits every waiting message (a sweep for expired ones); `visit` must not change the queue. */
  forEach(visit: (m: Message) => void): void {
    for (const { at, m } of this.#heap) if (m.state === "delayed" && m.notBefore === at) visit(m)
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#at = Infinity
  }

  #left(m: Message): void {
    this.#live--
    if (m.attempt === 0) this.#first--
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
    for (let top = this.#heap[0]; top; top = this.#heap[0]) {
      const { at, m } = top
      const live = m.state === "delayed" && m.notBefore === at
      if (live && at > now) {
        this.#arm(at)
        break
      }
      this.#pop()
      if (!live) continue
      this.#left(m)
      m.notBefore = undefined
      due.push(m)
    }
    if (due.length > 0) this.#due(due)
  }

  #rebuild(): void {
    const live = this.#heap.filter(({ at, m }) => m.state === "delayed" && m.notBefore === at)
    this.#heap = []
    for (const e of live) this.#push(e)
  }

  #push(e: { at: number; m: Message }): void {
    const h = this.#heap
    let i = h.push(e) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = h[parent] as { at: number; m: Message }
      if (p.at <= e.at) break
      h[i] = p
      i = parent
    }
    h[i] = e
  }

  #pop(): void {
    const h = this.#heap
    const last = h.pop()
    if (last === undefined || h.length === 0) return
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const r = l + 1
      const c = r < h.length && (h[r] as { at: number }).at < (h[l] as { at: number }).at ? r : l
      const child = h[c] as { at: number; m: Message }
      if (child.at >= last.at) break
      h[i] = child
      i = c
    }
    h[i] = last
  }
}
