/**
 * Named queues: one sender, one journal, one window, many queues. Each queue has its own ready
 * queue (by priority, see `ReadyQueue`) and its own counters; a worker takes the queues it
 * announced in READY (`"default"` when it announced none, as plain PPP workers do), round robin
 * across those with ready messages.
 */
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import { encodeTaskMeta } from "../../../lib/protocol.js"
import type { Message, WorkerPeer } from "./message.js"
import { ReadyQueue } from "./ready.js"

/** One named queue's figures, as `stats().queues` and `stats({ queue })` report them. */
export interface NamedQueueStats {
  /** Messages of this queue waiting for a worker. */
  ready: number
  /** Messages of this queue handed to a worker and not yet acked. */
  inFlight: number
  /** Messages of this queue in memory (ready, in flight, delayed, parked, being journaled). */
  inWindow: number
  /**
   * Messages of this queue known to wait on disk: sent since open, or read by the pager (a backlog
   * found at open counts toward its queue once the pager has read its messages).
   */
  backlog: number
  /** Connected workers that take this queue. */
  workers: number
  /** Messages of this queue accepted since open. */
  sent: number
  /** Messages of this queue acknowledged since open. */
  acked: number
  /** Handler failures of this queue's messages since open. */
  nacked: number
  /** This queue's messages delivered again since open. */
  redelivered: number
  /** This queue's messages dead-lettered since open (those that expired included). */
  deadLettered: number
  /** This queue's messages whose time to live ran out since open. */
  expired: number
}

/** A queue: its ready messages and its counters. */
export class QueueState {
  readonly name: string
  readonly ready = new ReadyQueue()
  /** What goes with a task of this queue without headers to a PPX/2 worker (see `taskMeta()`). */
  readonly meta: Buffer
  /** Connected workers that take it. */
  takers = 0
  /** Messages of this queue in the window. */
  held = 0
  /** Messages of this queue known to wait on disk. */
  backlog = 0
  /**
   * Set aside: messages of this queue on disk that the pager passed (or that left the window)
   * while no connected worker took the queue; read back by a catch-up of their own once one does
   * (see `BacklogPager`). `asideFrom` is that catch-up's cursor (exclusive), undefined while none
   * is set aside; `asideTo` the greatest id set aside.
   */
  aside = 0
  asideBytes = 0
  asideFrom: string | undefined
  asideTo: string | undefined
  sent = 0
  acked = 0
  nacked = 0
  redelivered = 0
  deadLettered = 0
  expired = 0

  constructor(name: string) {
    this.name = name
    this.meta = encodeTaskMeta(name, undefined)
  }

  /** Nothing of it is anywhere and nobody takes it: its state may be forgotten. */
  get idle(): boolean {
    return (
      this.held === 0 &&
      this.takers === 0 &&
      this.backlog === 0 &&
      this.ready.size === 0 &&
      this.asideFrom === undefined
    )
  }

  /** Sends to it wait on disk: nobody takes it, or its messages set aside are not all back yet. */
  get unserved(): boolean {
    return this.takers === 0 || this.asideFrom !== undefined
  }
}

/** Queue states kept at most when idle ones could be forgotten (see `state()`). */
const KEEP_STATES = 1024

/** The ready messages of every queue, and each queue's state. */
export class Queues {
  readonly #byName = new Map<string, QueueState>()
  readonly default = new QueueState(DEFAULT_QUEUE)
  #size = 0
  /** States kept before idle ones are next swept out (twice what the last sweep kept). */
  #sweepAt = KEEP_STATES

  constructor() {
    this.#byName.set(DEFAULT_QUEUE, this.default)
  }

  /** Ready messages of all queues. */
  get size(): number {
    return this.#size
  }

  /** Entries held by the ready queues, stale ones included (tests of bounded memory). */
  get held(): number {
    let n = 0
    for (const q of this.#byName.values()) n += q.ready.held
    return n
  }

  /** Queue states kept (tests of bounded memory). */
  get states(): number {
    return this.#byName.size
  }

  /**
   * The state of queue `name`, created on first use. Idle states of other queues are forgotten
   * (with their counters) once there are `KEEP_STATES` or more (then twice as many as the last
   * sweep kept, so that sweeps cost O(1) per new name), so that a sender fed ever new queue names
   * keeps memory bounded by what it holds.
   */
  state(name: string): QueueState {
    if (name === DEFAULT_QUEUE) return this.default
    let q = this.#byName.get(name)
    if (q === undefined) {
      if (this.#byName.size >= this.#sweepAt) {
        for (const [n, s] of this.#byName) if (s !== this.default && s.idle) this.#byName.delete(n)
        this.#sweepAt = Math.max(KEEP_STATES, 2 * this.#byName.size)
      }
      q = new QueueState(name)
      this.#byName.set(name, q)
    }
    return q
  }

  /** The state of queue `name` when it has one. */
  find(name: string): QueueState | undefined {
    return this.#byName.get(name)
  }

  values(): IterableIterator<QueueState> {
    return this.#byName.values()
  }

  push(m: Message): void {
    this.state(m.queue).ready.push(m)
    this.#size++
  }

  /** Puts messages back at the front of their queues (see `ReadyQueue.pushFront`). */
  pushFront(list: Message[]): void {
    this.#size += list.length
    const first = list[0] as Message
    if (list.every((m) => m.queue === first.queue)) {
      this.state(first.queue).ready.pushFront(list)
      return
    }
    const byQueue = new Map<string, Message[]>()
    for (const m of list) {
      const same = byQueue.get(m.queue)
      if (same) same.push(m)
      else byQueue.set(m.queue, [m])
    }
    for (const [name, same] of byQueue) this.state(name).ready.pushFront(same)
  }

  /** Puts a message just taken back at the very front of its queue. */
  putBack(m: Message): void {
    this.state(m.queue).ready.putBack(m)
    this.#size++
  }

  /** A ready message left without being taken (see `ReadyQueue.discard`). */
  discard(m: Message): void {
    this.state(m.queue).ready.discard(m)
    this.#size--
  }

  /** Visits every ready message; `visit` must not change the queues. */
  forEach(visit: (m: Message) => void): void {
    for (const q of this.#byName.values()) if (q.ready.size > 0) q.ready.forEach(visit)
  }

  /** Ready messages that worker `w` takes. */
  readyFor(w: WorkerPeer): number {
    const qs = w.queues
    if (qs.length === 1) return (qs[0] as QueueState).ready.size
    let n = 0
    for (const q of qs) n += q.ready.size
    return n
  }

  /** The next ready message for worker `w`: round robin across its queues with ready messages. */
  takeFor(w: WorkerPeer): Message | undefined {
    const qs = w.queues
    const n = qs.length
    if (n === 1) {
      const m = (qs[0] as QueueState).ready.take()
      if (m !== undefined) this.#size--
      return m
    }
    for (let i = 0; i < n; i++) {
      const at = (w.turn + i) % n
      const q = qs[at] as QueueState
      if (q.ready.size === 0) continue
      const m = q.ready.take()
      if (m === undefined) continue
      if (n > 1) w.turn = (at + 1) % n
      this.#size--
      return m
    }
    return undefined
  }

  /** More than the default queue is known: the rules of named queues apply (see `Dispatcher`). */
  get named(): boolean {
    return this.#byName.size > 1
  }

  /** Some connected worker takes some queue. */
  get served(): boolean {
    for (const q of this.#byName.values()) if (q.takers > 0) return true
    return false
  }

  /** Called with the queues that lost their last taker, and when a worker attached. */
  onChange: ((lost: QueueState[], attached: boolean) => void) | undefined

  /** Worker `w` takes these queues (its READY's `queues`, or the default). */
  attach(w: WorkerPeer, names: readonly string[] | undefined): void {
    const lost = this.#detach(w)
    w.queues = names === undefined ? [this.default] : names.map((n) => this.state(n))
    w.turn = 0
    for (const q of w.queues) q.takers++
    this.onChange?.(
      lost.filter((q) => q.takers === 0),
      true,
    )
  }

  /** Worker `w` is gone. */
  detach(w: WorkerPeer): void {
    const lost = this.#detach(w)
    if (lost.length > 0) this.onChange?.(lost, false)
  }

  /** Takes `w` off its queues; returns those it was the last taker of. */
  #detach(w: WorkerPeer): QueueState[] {
    const lost: QueueState[] = []
    for (const q of w.queues) if (--q.takers === 0) lost.push(q)
    w.queues = []
    return lost
  }

  /** One queue's figures; `inFlight` counted by the caller. */
  stats(q: QueueState | undefined, inFlight: number): NamedQueueStats {
    return {
      ready: q?.ready.size ?? 0,
      inFlight,
      inWindow: q?.held ?? 0,
      backlog: q?.backlog ?? 0,
      workers: q?.takers ?? 0,
      sent: q?.sent ?? 0,
      acked: q?.acked ?? 0,
      nacked: q?.nacked ?? 0,
      redelivered: q?.redelivered ?? 0,
      deadLettered: q?.deadLettered ?? 0,
      expired: q?.expired ?? 0,
    }
  }
}
