/** Worker sessions: the registry, a fair share of each dispatch pass, and recently gone workers. */
import { Liveness } from "../../../lib/liveness.js"
import { PPX, packLimit, type decodeReady } from "../../../lib/protocol.js"
import type { Message, WorkerPeer } from "./message.js"
import type { Queues } from "./queues.js"

export type Hello = ReturnType<typeof decodeReady>

/** A worker as `workers()` lists it. */
export interface WorkerInfo {
  workerId: string
  protocol: "ppp" | "ppx"
  credit: number
  inFlight: number
  /** The queues it takes. */
  queues: string[]
}

/** A worker's share of one dispatch pass. */
interface Share {
  worker: WorkerPeer
  /** Its index in the ring. */
  at: number
  /** What it can take in this pass: its free credit, at most a batch. */
  cap: number
  share: number
}

function freeCredit(w: WorkerPeer): number {
  return w.goodbye ? 0 : w.credit - w.inflight.size - w.overdue.size
}

export class WorkerRegistry {
  readonly #queues: Queues
  readonly #byKey = new Map<string, WorkerPeer>()
  #ring: WorkerPeer[] = []
  /** Where the next turn starts in `#ring`. */
  #next = 0
  /** The shares of the current dispatch pass (see `deal()`), handed out from `#planned` on. */
  #plan: Share[] = []
  #planned = 0
  /**
   * PPX workers no longer registered whose connection may still be up: "expired" (lost while
   * silent or unreachable) or "departed" (forgotten after their GOODBYE). A HEARTBEAT from one of
   * them must not register it as a plain PPP worker. Bounded: only recent ones matter.
   */
  readonly #gone = new Map<string, "expired" | "departed">()

  /** @param queues - where a worker's queues are attached (and detached when it goes) */
  constructor(queues: Queues) {
    this.#queues = queues
  }

  get size(): number {
    return this.#byKey.size
  }

  get(key: string): WorkerPeer | undefined {
    return this.#byKey.get(key)
  }

  values(): IterableIterator<WorkerPeer> {
    return this.#byKey.values()
  }

  /** Visits every message in flight, worker by worker. */
  forEachInFlight(visit: (m: Message) => void): void {
    for (const w of this.#byKey.values()) for (const m of w.inflight.values()) visit(m)
  }

  list(): WorkerInfo[] {
    return [...this.#byKey.values()].map((w) => ({
      workerId: w.key,
      protocol: w.protocol,
      credit: w.credit,
      inFlight: w.inflight.size,
      queues: w.queues.map((q) => q.name),
    }))
  }

  /** Registers a worker: a PPX one with its READY's settings, a plain PPP one with `defaults`. */
  add(
    routingId: Buffer,
    key: string,
    hello: Hello,
    defaults: { heartbeatInterval: number; liveness: number },
  ): WorkerPeer {
    this.#gone.delete(key)
    const w: WorkerPeer = {
      key,
      routingId: Buffer.from(routingId),
      protocol: hello ? "ppx" : "ppp",
      version: hello ? Math.min(hello.version ?? 1, PPX.VERSION) : 0,
      queues: [],
      turn: 0,
      credit: hello ? hello.credit : 1,
      packLimit: packLimit(hello?.maxMessageSize),
      maxMessageSize: hello?.maxMessageSize ?? Infinity,
      inflight: new Map(),
      overdue: new Map(),
      starts: false,
      single: hello?.single === true,
      liveness: new Liveness({
        heartbeatInterval: hello?.heartbeatInterval ?? defaults.heartbeatInterval,
        liveness: hello?.liveness ?? defaults.liveness,
      }),
      goodbye: false,
    }
    this.#queues.attach(w, announcedQueues(hello))
    this.#byKey.set(key, w)
    this.#ring.push(w)
    return w
  }

  /** Takes a second READY's settings; keeps what the worker holds. */
  update(w: WorkerPeer, hello: NonNullable<Hello>): void {
    w.protocol = "ppx"
    w.version = Math.min(hello.version ?? 1, PPX.VERSION)
    w.credit = hello.credit
    w.packLimit = packLimit(hello.maxMessageSize)
    w.maxMessageSize = hello.maxMessageSize ?? Infinity
    w.single = hello.single === true
    this.#queues.attach(w, announcedQueues(hello))
    w.liveness = new Liveness({
      heartbeatInterval: hello.heartbeatInterval,
      liveness: hello.liveness,
    })
  }

  delete(w: WorkerPeer): void {
    if (this.#byKey.get(w.key) === w) this.#queues.detach(w)
    this.#byKey.delete(w.key)
    const i = this.#ring.indexOf(w)
    if (i < 0) return
    this.#ring.splice(i, 1)
    if (this.#next > i) this.#next--
  }

  /**
   * Plans one dispatch pass over `ready` messages: they are dealt one at a time, like cards, to
   * the workers with free credit (at most `maxBatch` each, and no more than `readyFor()` says
   * are ready in the queues each takes), in turn from the worker after the one
   * that got the last message of the previous pass. `nextFree()` then hands out each worker's
   * share as one batch. Dealing one message at a time is what keeps the spread even whatever the
   * number of workers and however messages arrive: filling one worker's credit per turn would give
   * the first worker of every pass a whole batch while a message that arrives alone goes to the
   * next one, and so load the same worker again and again.
   */
  deal(ready: number, maxBatch: number, readyFor: (w: WorkerPeer) => number): void {
    this.#plan = []
    this.#planned = 0
    const n = this.#ring.length
    if (ready <= 0 || n === 0) return
    const order: Share[] = []
    let capacity = 0
    for (let i = 0; i < n; i++) {
      const at = (this.#next + i) % n
      const worker = this.#ring[at] as WorkerPeer
      const cap = Math.min(freeCredit(worker), maxBatch, readyFor(worker))
      if (cap <= 0) continue
      order.push({ worker, at, cap, share: 0 })
      capacity += cap
    }
    if (order.length === 0) return
    let last: Share
    if (ready >= capacity) {
      // Enough for everyone: each takes all it can, the turn goes round once.
      for (const s of order) s.share = s.cap
      last = order[order.length - 1] as Share
    } else {
      // At most maxBatch rounds: each gives one message to every worker with room left.
      let left = ready
      last = order[0] as Share
      while (left > 0)
        for (const s of order) {
          if (s.share === s.cap) continue
          s.share++
          last = s
          if (--left === 0) break
        }
    }
    this.#next = (last.at + 1) % n
    this.#plan = order.filter((s) => s.share > 0)
  }

  /**
   * The next worker to hand messages to and how many (`free`): the shares planned by `deal()`
   * first, then (when the plan is used up, e.g. a batch was cut short by its size) any worker with
   * free credit, in turn.
   */
  nextFree(): { worker: WorkerPeer; free: number } | undefined {
    while (this.#planned < this.#plan.length) {
      const s = this.#plan[this.#planned++] as Share
      const free = freeCredit(s.worker)
      if (free > 0 && this.#byKey.get(s.worker.key) === s.worker)
        return { worker: s.worker, free: Math.min(s.share, free) }
    }
    const n = this.#ring.length
    for (let i = 0; i < n; i++) {
      const at = (this.#next + i) % n
      const w = this.#ring[at] as WorkerPeer
      const free = freeCredit(w)
      if (free > 0) {
        this.#next = (at + 1) % n
        return { worker: w, free }
      }
    }
    return undefined
  }

  gone(key: string): "expired" | "departed" | undefined {
    return this.#gone.get(key)
  }

  clearGone(key: string): void {
    this.#gone.delete(key)
  }

  forget(key: string, why: "expired" | "departed"): void {
    this.#gone.delete(key)
    this.#gone.set(key, why)
    // Bounded: a worker comes back within seconds or never.
    if (this.#gone.size > 1024) this.#gone.delete(this.#gone.keys().next().value as string)
  }
}

/** The queues a worker takes: those its READY announced at PPX/2 or later, else the default. */
function announcedQueues(hello: Hello): string[] | undefined {
  return hello && (hello.version ?? 1) >= 2 ? hello.queues : undefined
}
