/** Worker sessions: the registry, fair round-robin choice by credit, and recently gone workers. */
import { Liveness } from "../../../lib/liveness.js"
import { packLimit, type decodeReady } from "../../../lib/protocol.js"
import type { WorkerPeer } from "./message.js"

export type Hello = ReturnType<typeof decodeReady>

/** A worker as `workers()` lists it. */
export interface WorkerInfo {
  workerId: string
  protocol: "ppp" | "ppx"
  credit: number
  inFlight: number
}

export class WorkerRegistry {
  readonly #byKey = new Map<string, WorkerPeer>()
  #ring: WorkerPeer[] = []
  #next = 0
  /**
   * PPX workers no longer registered whose connection may still be up: "expired" (lost while
   * silent or unreachable) or "departed" (forgotten after their GOODBYE). A HEARTBEAT from one of
   * them must not register it as a plain PPP worker. Bounded: only recent ones matter.
   */
  readonly #gone = new Map<string, "expired" | "departed">()

  get size(): number {
    return this.#byKey.size
  }

  get(key: string): WorkerPeer | undefined {
    return this.#byKey.get(key)
  }

  values(): IterableIterator<WorkerPeer> {
    return this.#byKey.values()
  }

  list(): WorkerInfo[] {
    return [...this.#byKey.values()].map((w) => ({
      workerId: w.key,
      protocol: w.protocol,
      credit: w.credit,
      inFlight: w.inflight.size,
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
      credit: hello ? hello.credit : 1,
      packLimit: packLimit(hello?.maxMessageSize),
      inflight: new Map(),
      liveness: new Liveness({
        heartbeatInterval: hello?.heartbeatInterval ?? defaults.heartbeatInterval,
        liveness: hello?.liveness ?? defaults.liveness,
      }),
      goodbye: false,
    }
    this.#byKey.set(key, w)
    this.#ring.push(w)
    return w
  }

  /** Takes a second READY's settings; keeps what the worker holds. */
  update(w: WorkerPeer, hello: NonNullable<Hello>): void {
    w.protocol = "ppx"
    w.credit = hello.credit
    w.packLimit = packLimit(hello.maxMessageSize)
    w.liveness = new Liveness({
      heartbeatInterval: hello.heartbeatInterval,
      liveness: hello.liveness,
    })
  }

  delete(w: WorkerPeer): void {
    this.#byKey.delete(w.key)
    const i = this.#ring.indexOf(w)
    if (i < 0) return
    this.#ring.splice(i, 1)
    if (this.#next > i) this.#next--
  }

  /**
   * The next worker with free credit, in turn: each call starts after the worker it returned
   * last, so work spreads over ready workers whatever their number.
   */
  nextFree(): { worker: WorkerPeer; free: number } | undefined {
    const n = this.#ring.length
    for (let i = 0; i < n; i++) {
      const at = (this.#next + i) % n
      const w = this.#ring[at] as WorkerPeer
      const free = w.goodbye ? 0 : w.credit - w.inflight.size
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
