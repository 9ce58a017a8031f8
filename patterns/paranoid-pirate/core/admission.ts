/**
 * Admission: who gets in, and who waits. A send to a persistent journal never waits for the
 * in-memory window: when the window is full (or older messages already wait on disk) it is
 * journaled only, as backlog, and paged in later in send order ("store and forward"). Producers
 * wait only at the backlog's budget (`maxBacklog`, `maxBacklogBytes`), or at the window when
 * there is no persistent journal, and for `request()`s, which live in memory only.
 *
 * The window is bounded twice: in messages (`window`) and in payload bytes (`windowBytes`). It
 * admits a message while both have room for it; a window holding nothing admits one message
 * however large, so that nothing is ever stuck.
 */
import { abortedError } from "../../../lib/errors.js"
import { Fifo } from "../../../lib/fifo.js"
import type { Schedule } from "./message.js"

/** The `backpressure` event: when producers start waiting (`reason` says for what) and when they stop (`"resumed"`). */
export interface BackpressureEvent {
  waiting: number
  backlog: number
  reason: "window" | "windowBytes" | "maxBacklog" | "maxBacklogBytes" | "resumed"
}

/** Why producers wait. */
export type WaitReason = Exclude<BackpressureEvent["reason"], "resumed">

export interface AdmissionLimits {
  window: number
  /** Payload bytes in memory at most (a window holding nothing still admits one message). */
  windowBytes: number
  maxBacklog: number
  maxBacklogBytes: number
  /** A persistent journal: sends may wait on disk. */
  persistent: boolean
}

/** What admission asks of the core. */
export interface AdmissionHost {
  /** Messages in memory. */
  inWindow(): number
  /** Payload bytes of the messages in memory. */
  inWindowBytes(): number
  /** Accepts a send into the window; resolves with its id once durable. */
  accept(frame: Buffer, schedule: Schedule | undefined): Promise<string>
  /** Journals a send as backlog (not kept in memory); resolves with its id once durable. */
  spill(frame: Buffer, schedule: Schedule | undefined): Promise<string>
  /**
   * True when the journal keeps a scheduled store: a send that is due later goes there (`later()`),
   * not into the window. Without one it goes into the window, or to disk, and waits there.
   */
  canSchedule(): boolean
  /** Journals a send that is due later in the scheduled store; resolves with its id once durable. */
  later(frame: Buffer, schedule: Schedule): Promise<string>
  /**
   * True when a send for the schedule's queue must wait on disk even with room in the window:
   * named queues are in use and no connected worker takes its queue (see `QueueState.unserved`).
   */
  unserved(schedule: Schedule | undefined): boolean
  backpressure(event: BackpressureEvent): void
}

interface Entry {
  /** A send: resolves with its id once accepted. A reservation: resolves with "". */
  resolve: (id: string) => void
  reject: (err: Error) => void
  /** A send's payload; dropped as soon as the entry is settled. */
  frame: Buffer | undefined
  /** A send's scheduling options. */
  schedule: Schedule | undefined
  /** A reservation's payload size (a send's is its frame's). */
  bytes: number
  settled: boolean
  signal: AbortSignal | undefined
  queue: WaitQueue
}

/**
 * A FIFO of waiting producers. An aborted one is settled at once (its payload dropped) and swept
 * out once settled entries outnumber live ones.
 */
class WaitQueue {
  #fifo = new Fifo<Entry>()
  #live = 0
  #stale = 0

  get live(): number {
    return this.#live
  }

  get held(): number {
    return this.#fifo.length
  }

  push(e: Entry): void {
    this.#fifo.push(e)
    this.#live++
  }

  /** The oldest live entry, left in place. */
  peek(): Entry | undefined {
    for (;;) {
      const e = this.#fifo.peek()
      if (!e || !e.settled) return e
      this.#fifo.shift()
      this.#stale--
    }
  }

  /** Removes the entry `peek()` returned and settles it. */
  take(e: Entry): void {
    this.#fifo.shift()
    this.#settle(e)
  }

  /** Settles an entry wherever it is (aborted); it is swept out later. */
  cancel(e: Entry): void {
    this.#settle(e)
    this.#stale++
    if (this.#stale > this.#live) {
      const fifo = new Fifo<Entry>()
      for (const x of this.#fifo.drain()) if (!x.settled) fifo.push(x)
      this.#fifo = fifo
      this.#stale = 0
    }
  }

  drain(): Entry[] {
    const out = this.#fifo.drain().filter((e) => !e.settled)
    for (const e of out) this.#settle(e)
    this.#stale = 0
    return out
  }

  #settle(e: Entry): void {
    e.settled = true
    e.frame = undefined
    e.schedule = undefined
    this.#live--
  }
}

export class Admission {
  readonly #limits: AdmissionLimits
  readonly #host: AdmissionHost
  /** Reservations (`request()`, a queue's requests): they need room in the window. */
  readonly #windowQ = new WaitQueue()
  /** Sends waiting for the backlog's budget or, without a persistent journal, for the window. */
  readonly #sendQ = new WaitQueue()
  /** Waiting producers by the signal they gave, with that signal's one listener. */
  readonly #signals = new Map<AbortSignal, { entries: Set<Entry>; onAbort: () => void }>()
  #reserved = 0
  /** Payload bytes of the reservations not yet used. */
  #reservedBytes = 0
  #reason: WaitReason | undefined
  #closed: Error | undefined

  // The backlog: messages journaled and not in memory. `count`/`bytes` are on disk; `spilling`
  // are still being written (and held in memory until then). `after` is the paging cursor and
  // `until` the greatest id written as backlog.
  count = 0
  bytes = 0
  /**
   * Of `count` and `bytes`: the messages set aside for queues nobody took when the pager passed
   * them (see `QueueState.aside`); what is left is ahead of the paging cursor.
   */
  aside = 0
  asideBytes = 0
  spilling = 0
  spillingBytes = 0
  /** Sends due later being written to the scheduled store (held in memory until then). */
  scheduling = 0
  schedulingBytes = 0
  after: string | undefined
  until: string | undefined

  constructor(limits: AdmissionLimits, host: AdmissionHost) {
    this.#limits = limits
    this.#host = host
  }

  /** Producers waiting. */
  get waiting(): number {
    return this.#windowQ.live + this.#sendQ.live
  }

  /** Older messages wait on disk (or are being written there): a new send must queue behind them. */
  get backlogActive(): boolean {
    return this.count - this.aside > 0 || this.spilling > 0
  }

  /**
   * Room in memory for one more message of `bytes`, after the reservations already made:
   * `undefined` when there is, else the limit in the way.
   */
  windowFull(bytes: number): WaitReason | undefined {
    const held = this.#host.inWindow() + this.#reserved
    if (held >= this.#limits.window) return "window"
    // A window holding nothing admits one message, however large: nothing is ever stuck.
    if (held > 0 && this.heldBytes() + bytes > this.#limits.windowBytes) return "windowBytes"
    return undefined
  }

  /** Payload bytes in memory and reserved for it. */
  heldBytes(): number {
    return this.#host.inWindowBytes() + this.#reservedBytes
  }

  /** Free places in the window for paging the backlog in (waiting reservations come first). */
  pageRoom(): number {
    return this.#limits.window - this.#host.inWindow() - this.#reserved - this.#windowQ.live
  }

  /**
   * Free payload bytes in the window for paging the backlog in: 0 while reservations wait (they
   * come first), Infinity when the window holds nothing (it takes one message of any size).
   */
  pageBytes(): number {
    if (this.#windowQ.live > 0) return 0
    if (this.#host.inWindow() + this.#reserved === 0) return Infinity
    return Math.max(0, this.#limits.windowBytes - this.heldBytes())
  }

  send(
    frame: Buffer,
    signal: AbortSignal | undefined,
    schedule: Schedule | undefined,
  ): Promise<string> {
    if (this.#closed) return Promise.reject(this.#closed)
    if (signal?.aborted) return Promise.reject(abortedError(signal))
    if (this.#sendQ.live === 0) {
      const now = this.#trySend(frame, schedule)
      if (now) return now
    }
    return new Promise((resolve, reject) =>
      this.#wait(this.#sendQ, resolve, reject, frame, signal, frame.length, schedule),
    )
  }

  /**
   * Reserves a place in the window (a `request()`): `undefined` when there is one now, else a
   * promise for it. The caller's next `submit()` uses it.
   */
  reserve(signal: AbortSignal | undefined, bytes: number): Promise<void> | undefined {
    if (this.#closed) throw this.#closed
    if (signal?.aborted) throw abortedError(signal)
    if (this.#windowQ.live === 0) {
      const full = this.windowFull(bytes)
      if (full === undefined) {
        this.#reserved++
        this.#reservedBytes += bytes
        return undefined
      }
      this.#reason ??= full
    }
    return new Promise<void>((resolve, reject) =>
      this.#wait(this.#windowQ, () => resolve(), reject, undefined, signal, bytes, undefined),
    )
  }

  /** A submit used its reservation (of `bytes`). */
  useReservation(bytes: number): void {
    if (this.#reserved === 0) return
    this.#reserved--
    this.#reservedBytes = this.#reserved === 0 ? 0 : Math.max(0, this.#reservedBytes - bytes)
  }

  /** Something changed (room freed, backlog written or paged in): let waiting producers in. */
  admit(): void {
    if (this.#closed) return
    for (let e = this.#windowQ.peek(); e; e = this.#windowQ.peek()) {
      if (this.windowFull(e.bytes) !== undefined) break
      this.#windowQ.take(e)
      this.#unwatch(e)
      this.#reserved++
      this.#reservedBytes += e.bytes
      e.resolve("")
    }
    for (let e = this.#sendQ.peek(); e; e = this.#sendQ.peek()) {
      const frame = e.frame as Buffer
      const now = this.#trySend(frame, e.schedule)
      if (!now) break
      this.#sendQ.take(e)
      this.#unwatch(e)
      now.then(e.resolve, e.reject)
    }
    this.#report()
  }

  /** Rejects every waiting producer; later calls fail with `err`. */
  close(err: Error): void {
    this.#closed = err
    for (const e of [...this.#windowQ.drain(), ...this.#sendQ.drain()]) e.reject(err)
    for (const [signal, { onAbort }] of this.#signals) signal.removeEventListener("abort", onAbort)
    this.#signals.clear()
    this.#report()
  }

  /** Sizes of the internal structures (tests of bounded memory). */
  sizes(): Record<string, number> {
    return {
      windowWaiters: this.#windowQ.held,
      sendWaiters: this.#sendQ.held,
      signals: this.#signals.size,
      reserved: this.#reserved,
      reservedBytes: this.#reservedBytes,
      spilling: this.spilling,
      spillingBytes: this.spillingBytes,
      scheduling: this.scheduling,
      schedulingBytes: this.schedulingBytes,
    }
  }

  /**
   * Takes a send now when it can go in: to the scheduled store (due later), into the window, or
   * to disk as backlog.
   */
  #trySend(frame: Buffer, schedule: Schedule | undefined): Promise<string> | undefined {
    if (
      schedule?.notBefore !== undefined &&
      schedule.notBefore > Date.now() &&
      this.#host.canSchedule()
    ) {
      // Held in memory until written, as spills are.
      const l = this.#limits
      if (this.scheduling >= l.window) this.#reason = "window"
      else if (this.scheduling > 0 && this.schedulingBytes + frame.length > l.windowBytes)
        this.#reason = "windowBytes"
      else return this.#host.later(frame, schedule)
      return undefined
    }
    const full = this.#windowQ.live > 0 ? "window" : this.windowFull(frame.length)
    if (
      full === undefined &&
      !this.backlogActive &&
      !(this.#limits.persistent && this.#host.unserved(schedule))
    )
      return this.#host.accept(frame, schedule)
    const why = this.#spillBlocked(frame.length, full ?? "window")
    if (why === undefined) return this.#host.spill(frame, schedule)
    this.#reason = why
    return undefined
  }

  /**
   * Why a send of `bytes` cannot go to disk now, or undefined when it can. Without a persistent
   * journal there is no disk: the window's limit `full` is the reason.
   */
  #spillBlocked(bytes: number, full: WaitReason): WaitReason | undefined {
    const l = this.#limits
    if (!l.persistent) return full
    // Spills are held in memory until written: as many as the window at most, and as many bytes
    // as the window's at most (one alone, however large, goes).
    if (this.spilling >= l.window) return "window"
    if (this.spilling > 0 && this.spillingBytes + bytes > l.windowBytes) return "windowBytes"
    const count = this.count + this.spilling
    if (count >= l.maxBacklog) return "maxBacklog"
    // One message larger than the whole budget still goes, alone.
    if (count > 0 && this.bytes + this.spillingBytes + bytes > l.maxBacklogBytes)
      return "maxBacklogBytes"
    return undefined
  }

  #wait(
    queue: WaitQueue,
    resolve: (id: string) => void,
    reject: (err: Error) => void,
    frame: Buffer | undefined,
    signal: AbortSignal | undefined,
    bytes: number,
    schedule: Schedule | undefined,
  ): void {
    const e: Entry = { resolve, reject, frame, schedule, bytes, settled: false, signal, queue }
    queue.push(e)
    if (queue === this.#windowQ) this.#reason ??= "window"
    if (signal) this.#watch(signal, e)
    this.#report()
  }

  /** Emits `backpressure` when producers start or stop waiting. */
  #reported = false
  #report(): void {
    const waiting = this.waiting
    if (waiting > 0 && !this.#reported) {
      this.#reported = true
      this.#host.backpressure({
        waiting,
        backlog: this.count + this.spilling,
        reason: this.#reason ?? "window",
      })
    } else if (waiting === 0 && this.#reported) {
      this.#reported = false
      this.#reason = undefined
      this.#host.backpressure({ waiting, backlog: this.count + this.spilling, reason: "resumed" })
    }
  }

  /**
   * One abort listener per signal, however many producers wait with it (adding listeners to one
   * signal one by one is quadratic); removed when its last entry is settled or when it fires.
   */
  #watch(signal: AbortSignal, e: Entry): void {
    let watched = this.#signals.get(signal)
    if (!watched) {
      const entries = new Set<Entry>()
      const onAbort = (): void => {
        this.#signals.delete(signal)
        const err = abortedError(signal)
        for (const x of entries) {
          if (x.settled) continue
          x.queue.cancel(x)
          x.reject(err)
        }
        entries.clear()
        this.admit() // an aborted head may have been holding others back
      }
      watched = { entries, onAbort }
      this.#signals.set(signal, watched)
      signal.addEventListener("abort", onAbort, { once: true })
    }
    watched.entries.add(e)
  }

  #unwatch(e: Entry): void {
    const signal = e.signal
    if (!signal) return
    const watched = this.#signals.get(signal)
    if (!watched) return
    watched.entries.delete(e)
    if (watched.entries.size > 0) return
    this.#signals.delete(signal)
    signal.removeEventListener("abort", watched.onAbort)
  }
}
