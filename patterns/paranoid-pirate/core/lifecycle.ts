/**
 * The core's lifecycle: `open()` reads the journal (or, for a pair's passive sender, only its
 * sender id) and binds the ROUTER that workers connect to; `activate()` makes a passive core the
 * one that dispatches; `close()` stops every part, says GOODBYE to the workers that know it,
 * flushes the journal and rejects whoever still waits. It owns the socket and the open, passive
 * and closed states.
 */
import type { Router } from "zeromq"
import { debug } from "../../../lib/debug.js"
import { PirateError, closedError, errorCode, errorMessage, toError } from "../../../lib/errors.js"
import { journalSenderId } from "../../../lib/journal/sender-id.js"
import type { Journal } from "../../../lib/journal/types.js"
import { FRAME_GOODBYE } from "../../../lib/protocol.js"
import { applyCurveServer, watchRefusals } from "../../../lib/security.js"
import { SocketWriter, bindRetrying } from "../../../lib/writer.js"
import type { Admission } from "./admission.js"
import type { QueueAside } from "./aside.js"
import type { Counters } from "./counters.js"
import type { DrainWatch } from "./drain-watch.js"
import type { ExpirySweep } from "./expiry.js"
import { receiveLoop } from "./inbound.js"
import { holdDeadLetterKeys, type KeyGate } from "./keys.js"
import type { JournalLanes } from "./lanes.js"
import type { BacklogPager } from "./pager.js"
import type { Producer } from "./producer.js"
import type { DelayQueue } from "./ready.js"
import { workerRouter } from "./router.js"
import type { Scheduler } from "./scheduler.js"
import type { SendIds } from "./send-ids.js"
import type { Sessions } from "./sessions.js"
import type { DispatcherSettings } from "./types.js"
import type { MessageWindow } from "./window.js"
import type { WorkerRegistry } from "./workers.js"

/** The parts of the core that open, activate and close. */
export interface LifecycleHost {
  readonly name: string
  readonly settings: DispatcherSettings
  readonly journal: Journal
  readonly counters: Counters
  readonly admission: Admission
  readonly producer: Producer
  readonly pager: BacklogPager
  readonly aside: QueueAside
  readonly scheduler: Scheduler | undefined
  readonly sendIds: SendIds
  readonly keys: KeyGate
  readonly delayed: DelayQueue
  readonly expiry: ExpirySweep
  readonly workers: WorkerRegistry
  readonly sessions: Sessions
  readonly lanes: JournalLanes
  readonly window: MessageWindow
  readonly drain: DrainWatch
  scheduleDispatch(): void
  error(err: Error): void
}

export class CoreLifecycle {
  readonly #h: LifecycleHost
  #router: Router | undefined
  #writer: SocketWriter | undefined
  #endpoint: string | undefined
  /** Announced in WELCOME: workers key their dedupe records on it. */
  #senderId: string | undefined
  #closed = false
  /** Opened passive (a pair's passive sender): dispatches nothing until `activate()`. */
  #passive = false
  #unregisterCurve: (() => void) | undefined

  constructor(host: LifecycleHost) {
    this.#h = host
  }

  get endpoint(): string | undefined {
    return this.#endpoint
  }

  get senderId(): string | undefined {
    return this.#senderId
  }

  get closed(): boolean {
    return this.#closed
  }

  /** True until `activate()` for a core opened passive. */
  get passive(): boolean {
    return this.#passive
  }

  /** Sends `frames` to a worker (nothing before open). */
  write(frames: Buffer[]): void {
    this.#writer?.write(frames)
  }

  /**
   * Opens the journal and binds `bind`, the endpoint of the option named `option` (for errors).
   * A `passive` core (the passive sender of a pair) reads nothing of the journal, answers workers
   * and hands them nothing until `activate()`.
   */
  async open(bind: string, option: string, passive: boolean): Promise<void> {
    const h = this.#h
    await h.journal.open()
    let router: Router | undefined
    try {
      if (passive) {
        this.#passive = true
        this.#senderId = await journalSenderId(h.journal)
      } else await this.#recover(undefined)
      router = workerRouter(h.settings)
      const r = router
      if (h.settings.curve) this.#unregisterCurve = await applyCurveServer(r, h.settings.curve)
      await bindRetrying(router, bind, option)
      // Every refused handshake, the ZAP handler's denials included, is reported here once. The
      // monitor starts after the bind: with it attached, libzmq reports each failed bind of the
      // retries as an event, and a bind can then fail with EAGAIN instead of EADDRINUSE.
      if (h.settings.curve) void watchRefusals(r, () => h.counters.denied++)
      this.#router = router
      this.#endpoint = router.lastEndpoint ?? bind
      this.#writer = new SocketWriter(router, (err, frames) => this.#onSendError(err, frames))
      receiveLoop(router, h.sessions, () => this.#closed).catch((err: unknown) =>
        h.error(toError(err)),
      )
      h.sessions.start()
      if (!passive) await this.#startJournalWork()
    } catch (err) {
      // Leave nothing behind: a failed open may be retried with another endpoint.
      this.#closed = true
      h.sessions.stop()
      this.#unregisterCurve?.()
      router?.close()
      h.admission.close(closedError(h.name))
      await h.journal.close()
      throw err
    }
  }

  /**
   * A passive core becomes the one that dispatches: it reads the journal as an open does (its
   * messages are paged into the window; ids go on above `floor` too) and hands out work.
   */
  async activate(floor: string | undefined): Promise<void> {
    if (!this.#passive || this.#closed) return
    await this.#recover(floor)
    this.#passive = false
    await this.#startJournalWork()
    this.#h.scheduleDispatch()
  }

  /** What the journal holds at open: ids go on above it (and `floor`); its messages are paged in. */
  async #recover(floor: string | undefined): Promise<void> {
    const h = this.#h
    const lastId = await h.journal.lastId()
    h.producer.startAfter(
      floor !== undefined && (lastId === undefined || floor > lastId) ? floor : lastId,
      h.settings.idParity,
    )
    this.#senderId = await journalSenderId(h.journal)
    const js = await h.journal.stats()
    h.counters.dead = js.dead
    if (js.pending > 0) {
      h.aside.foundUntil = lastId
      h.pager.found(js.pending, lastId)
      h.drain.busy()
    }
    if (h.settings.keyOnDead === "hold" && js.dead > 0) await holdDeadLetterKeys(h.journal, h.keys)
    if (h.scheduler && (js.scheduled ?? 0) > 0) {
      h.drain.busy()
      await h.scheduler.start(js.scheduled ?? 0)
    }
  }

  async #startJournalWork(): Promise<void> {
    this.#h.sendIds.start()
    await this.#h.pager.start()
  }

  /** Closes; waiting calls reject with `reason` (`PIRATE_CLOSED` by default). */
  async close(reason?: PirateError): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const h = this.#h
    const errors: unknown[] = []
    h.sessions.stop()
    h.pager.stop()
    h.delayed.stop()
    h.scheduler?.stop()
    h.expiry.stop()
    const sweeping = h.sendIds.stop()
    const closed = reason ?? closedError(h.name)
    h.admission.close(closed)
    for (const w of h.workers.values())
      if (w.protocol === "ppx") this.#writer?.write([w.routingId, FRAME_GOODBYE])
    h.lanes.close()
    for (const step of [
      async () => {
        await this.#writer?.flushed()
        // No unbind() before close(): libzmq 4.3.5 can abort (pipe.cpp assertion) when an unbound
        // socket's pipes are still terminating as it closes. A restart on the same endpoint
        // retries its bind while the port is released (bindRetrying).
        this.#router?.close()
        this.#unregisterCurve?.()
      },
      () => h.pager.running,
      () => h.scheduler?.running,
      () => sweeping,
      () => h.lanes.flush(),
      () => h.journal.close(),
    ]) {
      try {
        await step()
      } catch (err) {
        errors.push(err)
      }
    }
    h.window.rejectWaiters(closed)
    h.window.wakeRoomWaiters()
    h.drain.close(closed)
    if (errors.length > 0) throw new AggregateError(errors, `${h.name} close failed`)
  }

  #onSendError(err: unknown, frames: Buffer[]): void {
    if (this.#closed) return
    const id = frames[0]
    const w = id ? this.#h.workers.get(id.toString("hex")) : undefined
    const code = errorCode(err) ?? errorMessage(err)
    if (w) this.#h.sessions.lose(w, `unreachable (${code})`)
    else debug("%s: send failed: %s", this.#h.name, code)
  }
}
