/**
 * Worker sessions and what becomes of the messages they hold: READY, heartbeats both ways, acks,
 * nacks with retry backoff or dead letter, ack deadlines, GOODBYE, and the loss of a worker,
 * whose messages go back to the front of the ready queue for the others.
 */
import { backoffDelay } from "../../../lib/backoff.js"
import { joinBody } from "../../../lib/body.js"
import { debug } from "../../../lib/debug.js"
import { DeadLetterError, errorMessage } from "../../../lib/errors.js"
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import type { DeadLetter } from "../../../lib/journal/types.js"
import type { PairStateName } from "../../../lib/pair/pair-state.js"
import {
  FRAME_GOODBYE,
  FRAME_HEARTBEAT,
  decodeEnvelope,
  encodePair,
  decodeReady,
  readAcks,
  encodeWelcome,
  type NackInfo,
} from "../../../lib/protocol.js"
import type { Counters } from "./counters.js"
import type { InboundHandler } from "./inbound.js"
import type { KeyGate } from "./keys.js"
import type { JournalLanes } from "./lanes.js"
import {
  DEFAULT_PRIORITY,
  byId,
  expired,
  ownPayload,
  type Message,
  type WorkerPeer,
} from "./message.js"
import type { Queues } from "./queues.js"
import type { DelayQueue } from "./ready.js"
import type { DispatcherEvents, DispatcherSettings } from "./types.js"
import type { Hello, WorkerRegistry } from "./workers.js"
import { CodecRefusals } from "./refusals.js"
import { dispatchReady } from "./dispatch.js"

/**
 * What a sender of a pair gives its sessions (docs/pair.md section 5): its state, announced to
 * workers that know pairs, and where their votes go.
 */
export interface PairHooks {
  /** The sender's pair state now, for a WELCOME. */
  state(): PairStateName
  /** A worker that announced `pair` voted for this sender. */
  vote(): void
}

/** What the sessions need of the core. */
export interface SessionsHost {
  readonly name: string
  readonly settings: DispatcherSettings
  readonly counters: Counters
  readonly lanes: JournalLanes
  readonly workers: WorkerRegistry
  readonly delayed: DelayQueue
  readonly keys: KeyGate
  /** The queues, for their counters and their meta records. */
  readonly queues: Queues
  /** A message with a send id was acked (see `SendIds`). */
  sendIdAcked(dedupeId: string): void
  /** The sender's identity, announced in WELCOME. */
  senderId(): string | undefined
  write(frames: Buffer[]): void
  /** Back to the ready queue, ahead of new messages. */
  makeReadyFront(list: Message[]): void
  /** Takes a message out of the ready or delay queue (a late ack settled it). */
  withdraw(m: Message): void
  /** The message left the window. */
  finish(m: Message): void
  /** The message left the window; `settled()` follows (after a batch of acks). */
  leave(m: Message): void
  /** Messages left the window: page in, let producers in, check for drained. */
  settled(): void
  scheduleDispatch(): void
  /** Present on a sender of a pair: WELCOME says its state, VOTE is taken. */
  readonly pair?: PairHooks | undefined
  emit<K extends keyof DispatcherEvents>(event: K, ...args: DispatcherEvents[K]): boolean
}

export class Sessions implements InboundHandler {
  readonly #h: SessionsHost
  #tick: NodeJS.Timeout | undefined
  /** The heartbeat interval the tick is armed for. */
  #tickFor = Infinity
  /** Connections refused at their READY: their codec differs (see refusals.ts). */
  readonly #refusals: CodecRefusals
  /**
   * Keys of the registered PPX workers that announced `pair` to a sender of a pair: they get its
   * state in WELCOME and PAIR, and their VOTEs count.
   */
  readonly #pairAware = new Set<string>()

  constructor(host: SessionsHost) {
    this.#h = host
    this.#refusals = new CodecRefusals({
      name: host.name,
      settings: host.settings,
      counters: host.counters,
      senderId: () => host.senderId(),
      write: (frames) => host.write(frames),
      lose: (key, reason) => {
        const w = host.workers.get(key)
        if (w) this.lose(w, reason)
      },
      emit: (event, ...args) => host.emit(event, ...args),
    })
  }

  /** Starts the heartbeat and deadline checks. */
  start(): void {
    this.#armTick(this.#h.settings.heartbeatInterval)
  }

  stop(): void {
    clearInterval(this.#tick)
  }

  // ------------------------------------------------------------------------------------------
  // inbound

  disconnected(key: string): void {
    this.#refusals.forget(key)
    const w = this.#h.workers.get(key)
    if (w) this.lose(w, "disconnected")
    else this.#h.workers.clearGone(key)
  }

  seen(key: string): void {
    this.#h.workers.get(key)?.liveness.seen()
  }

  ready(routingId: Buffer, key: string, frame: Buffer): void {
    let hello: Hello
    try {
      hello = decodeReady(frame)
    } catch (err) {
      return this.drop(errorMessage(err), key)
    }
    if (hello && this.#refusals.refuse(routingId, key, hello)) return
    this.#refusals.forget(key)
    const existing = this.#h.workers.get(key)
    if (!existing) return this.#register(routingId, key, hello)
    // A second READY from the same connection: take the new settings, keep what it holds.
    if (hello) {
      this.#setPairAware(key, hello)
      this.#h.workers.update(existing, hello)
      this.#setStarts(existing, hello)
      if (hello.heartbeatInterval < this.#tickFor) this.#armTick(hello.heartbeatInterval)
      this.#welcome(existing)
    }
    existing.goodbye = false
    this.#h.scheduleDispatch()
  }

  heartbeat(routingId: Buffer, key: string): void {
    const { workers } = this.#h
    const w = workers.get(key)
    if (w) {
      if (w.protocol === "ppp" && w.inflight.size > 0) this.#onIdleHeartbeat(w)
      return
    }
    if (this.#refusals.has(key)) return // its codec differs: it is not a worker of ours
    const gone = workers.gone(key)
    if (gone === "expired") {
      // A PPX worker we gave up on (it was silent) is back on the same connection: have it
      // reconnect and announce itself again rather than serve it as a plain PPP worker.
      workers.clearGone(key)
      this.#h.write([routingId, FRAME_GOODBYE])
    } else if (gone === "departed") {
      // A worker that said GOODBYE and still heartbeats while it closes: it wants nothing.
      debug("%s: heartbeat from %s, which said goodbye: ignored", this.#h.name, key)
    } else this.#register(routingId, key, null) // a Guide worker: any sign of life means ready
  }

  goodbye(routingId: Buffer, key: string): void {
    const w = this.#h.workers.get(key)
    if (!w) return
    // Confirm: nothing follows this GOODBYE on the connection, so the worker may close once it
    // has acked what it holds.
    if (!w.goodbye && w.protocol === "ppx") this.#h.write([routingId, FRAME_GOODBYE])
    w.goodbye = true
    if (holds(w) === 0) this.#depart(w)
  }

  vote(key: string): void {
    const hooks = this.#h.pair
    // Not in a pair, or a worker that did not say it knows pairs: an unknown command to us.
    if (!hooks || !this.#pairAware.has(key)) return this.drop("unknown command 0x1b", key)
    debug("%s: vote from %s", this.#h.name, key)
    hooks.vote()
  }

  /** PAIR: tells every PPX worker that announced `pair` the sender's new state. */
  announcePair(state: PairStateName): void {
    if (this.#pairAware.size === 0) return
    const frames = encodePair(state)
    for (const key of this.#pairAware) {
      const w = this.#h.workers.get(key)
      if (!w) continue
      this.#h.write([w.routingId, ...frames])
      w.liveness.sent()
    }
  }

  /** Marks a PPX worker as pair-aware when it announced `pair` and this sender is of a pair. */
  #setPairAware(key: string, hello: NonNullable<Hello>): void {
    if (this.#h.pair && hello.pair === true) this.#pairAware.add(key)
    else this.#pairAware.delete(key)
  }

  ack(key: string, envelope: Buffer, body: Buffer): void {
    const env = decodeEnvelope(envelope)
    const w = this.#h.workers.get(key)
    if (this.#acked(w, key, env?.id ?? null, env?.attempt ?? 0, body, 0, body.length))
      this.#h.settled()
  }

  acks(key: string, envelopes: Buffer, replies: Buffer): boolean {
    const w = this.#h.workers.get(key)
    let taken = false
    const ok = readAcks(envelopes, replies, (id, attempt, start, end) => {
      if (this.#acked(w, key, id, attempt, replies, start, end)) taken = true
    })
    // Once for the whole batch: page in, let producers in, check for drained.
    if (taken) this.#h.settled()
    return ok
  }

  /**
   * An ack of the attempt `attempt` of message `id` (null: an envelope that is not ours), its
   * reply the bytes `start`–`end` of `frame`; true when it took the message out of the window
   * (the caller then calls `settled()`).
   */
  #acked(
    w: WorkerPeer | undefined,
    key: string,
    id: string | null,
    attempt: number,
    frame: Buffer,
    start: number,
    end: number,
  ): boolean {
    const m = this.#claim(w, key, id, attempt, true)
    if (!m || !w) return false
    if (m.state === "inflight") this.#release(w, m)
    else this.#h.withdraw(m) // a late ack, taken: nobody else has had the message since
    const n = this.#h.counters
    n.acked++
    this.#h.queues.state(m.queue).acked++
    n.latency.record(performance.now() - m.t0)
    if (m.durable) this.#h.lanes.remove(m.id, m.dedupeId)
    if (m.dedupeId !== undefined) this.#h.sendIdAcked(m.dedupeId)
    const waiter = m.waiter
    this.#h.leave(m)
    waiter?.resolve(start === 0 && end === frame.length ? frame : frame.subarray(start, end))
    return true
  }

  nack(key: string, envelope: Buffer, info: NackInfo): void {
    const w = this.#h.workers.get(key)
    const env = decodeEnvelope(envelope)
    const m = this.#claim(w, key, env?.id ?? null, env?.attempt ?? 0, false)
    if (!m || !w) return
    this.#release(w, m)
    this.#h.counters.nacked++
    this.#h.queues.state(m.queue).nacked++
    this.#fail(m, info.error, info.reject === true, info.delay)
  }

  extend(key: string, envelope: Buffer): void {
    const m = this.#timed(key, envelope, "EXTEND")
    if (m) m.deadline = performance.now() + this.#h.settings.ackTimeout
  }

  started(key: string, envelope: Buffer): void {
    const m = this.#timed(key, envelope, "STARTED")
    // The deadline runs from the start of the handler; an EXTEND that came first stands.
    if (m && m.deadline === undefined) m.deadline = performance.now() + this.#h.settings.ackTimeout
  }

  /** The in-flight message an EXTEND or STARTED names, when the queue has ack deadlines. */
  #timed(key: string, envelope: Buffer, what: string): Message | undefined {
    const env = decodeEnvelope(envelope)
    if (!env) {
      this.drop(`${what} with an envelope that is not ours`, key)
      return undefined
    }
    const m = this.#h.workers.get(key)?.inflight.get(env.id)
    return m && m.attempt === env.attempt && this.#h.settings.ackTimeout > 0 ? m : undefined
  }

  drop(reason: string, key?: string): void {
    this.#h.counters.dropped++
    debug("%s: dropped from %s: %s", this.#h.name, key ?? "?", reason)
  }

  // ------------------------------------------------------------------------------------------
  // dispatch

  /** Hands ready messages to workers with free credit (see `dispatchReady()`). */
  dispatch(ready: Queues): void {
    dispatchReady(this.#h, ready, (m) => this.expire(m))
  }

  // ------------------------------------------------------------------------------------------
  // registration

  #register(routingId: Buffer, key: string, hello: Hello): void {
    const s = this.#h.settings
    const w = this.#h.workers.add(routingId, key, hello, s)
    this.#setStarts(w, hello)
    if (hello) this.#setPairAware(key, hello)
    else this.#pairAware.delete(key)
    if (w.liveness.heartbeatInterval < this.#tickFor) this.#armTick(w.liveness.heartbeatInterval)
    if (hello) this.#welcome(w)
    debug("%s: worker %s ready (%s, credit %d)", this.#h.name, key, w.protocol, w.credit)
    this.#h.emit("worker:ready", { workerId: key, credit: w.credit, protocol: w.protocol })
    this.#h.scheduleDispatch()
  }

  #welcome(w: WorkerPeer): void {
    this.#h.write([
      w.routingId,
      ...encodeWelcome({
        version: w.version,
        heartbeatInterval: w.liveness.heartbeatInterval,
        liveness: w.liveness.liveness,
        maxMessageSize: this.#h.settings.maxMessageSize,
        sender: this.#h.senderId(),
        started: w.starts || undefined,
        single: w.single || undefined,
        codec: this.#h.settings.codec,
        pair: this.#pairAware.has(w.key) ? this.#h.pair?.state() : undefined,
      }),
    ])
    w.liveness.sent()
  }

  /**
   * Ack deadlines run from the start of the handler when the worker can say when that is (it
   * announced `started`) and there are deadlines at all; else from the dispatch.
   */
  #setStarts(w: WorkerPeer, hello: Hello): void {
    const starts = hello?.started === true && this.#h.settings.ackTimeout > 0
    if (w.starts && !starts) {
      // No STARTED will come any more: what is waiting for one is timed from now.
      const deadline = performance.now() + this.#h.settings.ackTimeout
      for (const m of w.inflight.values()) m.deadline ??= deadline
    }
    w.starts = starts
  }

  // ------------------------------------------------------------------------------------------
  // outcomes

  /**
   * Finds the in-flight message an ack names; `undefined` (counted) for a stale or foreign one.
   * The answer for an attempt whose deadline had passed frees that worker's slot; with `late`
   * (an ack) it returns the message when nobody else has had it since (it waits, ready).
   */
  #claim(
    w: WorkerPeer | undefined,
    key: string,
    id: string | null,
    attempt: number,
    late: boolean,
  ): Message | undefined {
    if (id === null) {
      this.drop("reply with an envelope that is not ours", key)
      return undefined
    }
    const m = w?.inflight.get(id)
    if (m && m.attempt === attempt && m.state === "inflight") return m
    const slot = overdueKey(id, attempt)
    const o = w?.overdue.get(slot)
    if (w && o) {
      w.overdue.delete(slot)
      this.#freed(w)
      if (late && o.attempt === attempt && o.state === "ready") return o
    }
    this.#h.counters.staleAcks++
    debug(
      "%s: stale ack for %s attempt %d from %s",
      this.#h.name,
      id,
      attempt,
      w ? key : `${key} (not a registered worker)`,
    )
    return undefined
  }

  #release(w: WorkerPeer, m: Message): void {
    w.inflight.delete(m.id)
    m.worker = undefined
    m.deadline = undefined
    this.#freed(w)
  }

  /** A slot of the worker is free again. */
  #freed(w: WorkerPeer): void {
    if (w.goodbye && holds(w) === 0) this.#depart(w)
    else this.#h.scheduleDispatch()
  }

  /**
   * A plain PPP worker heartbeats only between jobs. A heartbeat sent well after it was given a
   * message means it is done with it without replying (its handler failed): retry elsewhere.
   * Heartbeats that crossed the dispatch on the wire (sent within an interval of it) are not that.
   */
  #onIdleHeartbeat(w: WorkerPeer): void {
    const now = performance.now()
    const dropped = [...w.inflight.values()].filter(
      (m) => now - m.sentAt > w.liveness.heartbeatInterval,
    )
    for (const m of dropped) {
      this.#release(w, m)
      this.#h.counters.nacked++
      this.#h.queues.state(m.queue).nacked++
      this.#fail(
        m,
        "the worker went idle without replying (a plain PPP worker's handler failed)",
        false,
      )
    }
  }

  /** An attempt failed: retry after a backoff, or dead-letter when attempts are used up. */
  #fail(m: Message, error: string, reject: boolean, delay?: number): void {
    const s = this.#h.settings
    m.lastError = error
    if (expired(m, Date.now())) return this.expire(m)
    if (reject || m.attempt >= s.maxAttempts) return this.#bury(m, error)
    const wait = delay ?? backoffDelay(m.attempt, s.retryBackoff, s.random)
    this.#h.emit("message:nacked", { id: m.id, attempt: m.attempt, error, delay: wait })
    const notBefore = Date.now() + wait
    if (m.durable)
      this.#h.lanes.update({ id: m.id, attempts: m.attempt, lastError: error, notBefore })
    ownPayload(m)
    if (wait === 0) this.#h.makeReadyFront([m])
    else this.#h.delayed.add(m, notBefore)
  }

  /**
   * A message's time to live ran out before it was acked: it goes to the dead letters, with the
   * error "expired", and is not dispatched again.
   */
  expire(m: Message): void {
    this.#h.counters.expired++
    this.#h.queues.state(m.queue).expired++
    this.#h.emit("message:expired", { id: m.id, attempts: m.attempt })
    this.#bury(m, "expired")
  }

  #bury(m: Message, error: string): void {
    this.#h.counters.dead++
    this.#h.queues.state(m.queue).deadLettered++
    // `keyOnDead: "hold"`: the messages behind it on its key wait until it is replayed.
    if (m.key !== undefined && this.#h.settings.keyOnDead === "hold") this.#h.keys.hold(m.key)
    debug("%s: message %s dead after %d attempts: %s", this.#h.name, m.id, m.attempt, error)
    // Every dead letter is kept, in a memory journal too, so it can be listed and replayed.
    const letter: DeadLetter = {
      id: m.id,
      payload: joinBody(m.payload),
      attempts: m.attempt,
      lastError: error,
      enqueuedAt: m.enqueuedAt,
      deadAt: Date.now(),
    }
    if (m.priority !== DEFAULT_PRIORITY) letter.priority = m.priority
    if (m.key !== undefined) letter.key = m.key
    if (m.expiresAt !== undefined) letter.expiresAt = m.expiresAt
    if (m.dedupeId !== undefined) letter.dedupeId = m.dedupeId
    if (m.queue !== DEFAULT_QUEUE) letter.queue = m.queue
    if (m.headers !== undefined) letter.headers = m.headers
    this.#h.lanes.bury(letter)
    const waiter = m.waiter
    this.#h.finish(m)
    this.#h.emit("message:dead", { id: m.id, attempts: m.attempt, error })
    waiter?.reject(new DeadLetterError(m.id, m.attempt, error))
  }

  /** Back to the front after a lost attempt; dead-lettered when attempts are used up. */
  #requeue(list: Message[], reason: string): Message[] {
    const back: Message[] = []
    for (const m of list) {
      m.worker = undefined
      m.deadline = undefined
      m.lastError = reason
      this.#h.emit("message:requeued", { id: m.id, attempt: m.attempt, reason })
      if (expired(m, Date.now())) this.expire(m)
      else if (m.attempt >= this.#h.settings.maxAttempts) this.#bury(m, reason)
      else {
        if (m.durable) this.#h.lanes.update({ id: m.id, attempts: m.attempt, lastError: reason })
        ownPayload(m)
        back.push(m)
      }
    }
    this.#h.makeReadyFront(back)
    return back
  }

  // ------------------------------------------------------------------------------------------
  // heartbeats and loss

  /**
   * Runs the heartbeat and expiry checks four times per heartbeat interval of the fastest peer
   * (the sender's own, or a worker's that announced a shorter one).
   */
  #armTick(heartbeatInterval: number): void {
    clearInterval(this.#tick)
    this.#tickFor = heartbeatInterval
    this.#tick = setInterval(() => this.#onTick(), Math.max(10, Math.floor(heartbeatInterval / 4)))
    this.#tick.unref()
  }

  #onTick(): void {
    const now = performance.now()
    const { ackTimeout } = this.#h.settings
    for (const w of [...this.#h.workers.values()]) {
      // A plain PPP worker sends nothing while it works: alive until its ack deadline.
      const busyPlain = w.protocol === "ppp" && w.inflight.size > 0
      if (!busyPlain && w.liveness.expired()) {
        this.lose(w, `no heartbeat for ${Math.round(w.liveness.silence())} ms`)
        continue
      }
      if (w.liveness.heartbeatDue()) {
        this.#h.write([w.routingId, FRAME_HEARTBEAT])
        w.liveness.sent()
      }
      if (ackTimeout === 0) continue
      const expired: Message[] = []
      for (const m of w.inflight.values())
        if (m.deadline !== undefined && m.deadline <= now) expired.push(m)
      if (expired.length === 0) continue
      if (w.protocol === "ppp") {
        // A plain worker says nothing while busy: past the deadline it is presumed hung.
        this.lose(w, `no ack within ${ackTimeout} ms`)
        continue
      }
      // Its handler may still run: the message goes back to the queue, but keeps its slot here
      // until the worker answers for that attempt (a late ack is taken if nobody else has it).
      for (const m of expired) {
        w.inflight.delete(m.id)
        w.overdue.set(overdueKey(m.id, m.attempt), m)
      }
      this.#requeue(expired, `no ack within ${ackTimeout} ms`)
    }
  }

  /** A worker is gone (silent, disconnected, unreachable): its messages go to the others. */
  lose(w: WorkerPeer, reason: string): void {
    const { workers } = this.#h
    if (workers.get(w.key) !== w) return
    if (w.protocol === "ppx" && reason !== "disconnected") workers.forget(w.key, "expired")
    const held = [...w.inflight.values()]
    workers.delete(w)
    this.#pairAware.delete(w.key)
    this.#h.counters.workersLost++
    debug("%s: worker %s lost (%s), requeueing %d", this.#h.name, w.key, reason, held.length)
    held.sort(byId)
    const back = this.#requeue(held, `worker lost: ${reason}`)
    this.#h.emit("worker:lost", { workerId: w.key, reason, requeued: back.length })
  }

  /** A worker that said GOODBYE holds nothing any more: forget it. */
  #depart(w: WorkerPeer): void {
    this.#h.workers.delete(w)
    this.#pairAware.delete(w.key)
    this.#h.workers.forget(w.key, "departed")
  }
}

/** The key of an attempt in `WorkerPeer.overdue`: the same message may be overdue twice there. */
function overdueKey(id: string, attempt: number): string {
  return `${attempt}:${id}`
}

/** Messages a worker holds: in flight, and overdue ones its handlers still run. */
function holds(w: WorkerPeer): number {
  return w.inflight.size + w.overdue.size
}
