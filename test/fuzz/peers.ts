/**
 * Raw ZeroMQ peers that record what they receive, and the queue core under fire: one run shared
 * by the Sender and the ParanoidPirateQueue backend.
 */
import { EventEmitter } from "node:events"
import { expect } from "vitest"
import { Dealer, type Router } from "zeromq"
import { PPX, encodeReady, type Envelope } from "../../lib/protocol.js"
import { waitFor } from "../helpers/wait.js"
import { materialize, type MessageSpec } from "./arbitraries.js"
import { expectFromDispatcher } from "./oracles.js"

/** Records every message a raw socket receives; `waitFor` resolves on the first match. */
export class Inbox extends EventEmitter<{ message: [Buffer[]] }> {
  readonly messages: Buffer[][] = []
  readonly done: Promise<void>

  constructor(socket: Dealer | Router) {
    super()
    this.done = (async () => {
      try {
        for await (const msg of socket) {
          this.messages.push(msg)
          this.emit("message", msg)
        }
      } catch {
        /* closed */
      }
    })()
  }

  count(match: (m: Buffer[]) => boolean): number {
    let n = 0
    for (const m of this.messages) if (match(m)) n++
    return n
  }

  /** Resolves once `count(match) >= n`. */
  waitForCount(
    match: (m: Buffer[]) => boolean,
    n: number,
    what: string,
    timeout = 5000,
  ): Promise<void> {
    return this.#until(() => this.count(match) >= n, what, timeout)
  }

  /** Resolves with the first message (from index `from` on) that matches. */
  async waitFor(
    match: (m: Buffer[]) => boolean,
    what: string,
    timeout = 5000,
    from = 0,
  ): Promise<Buffer[]> {
    const found = (): Buffer[] | undefined => this.messages.slice(from).find(match)
    await this.#until(() => found() !== undefined, what, timeout)
    return found() as Buffer[]
  }

  /** Resolves once `done()` holds, checked now and at every message; rejects after `timeout` ms. */
  #until(done: () => boolean, what: string, timeout: number): Promise<void> {
    if (done()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const onMessage = (): void => {
        if (!done()) return
        clearTimeout(timer)
        this.off("message", onMessage)
        resolve()
      }
      const timer = setTimeout(() => {
        this.off("message", onMessage)
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}`))
      }, timeout)
      this.on("message", onMessage)
    })
  }
}

/** True for a message that carries work to a worker (a PPP request or PPX TASKS). */
export function isTask(m: readonly Buffer[]): boolean {
  const f = m[0]
  return (
    (f?.length === 1 && f[0] === PPX.TASKS) || (m.length === 3 && m[1]?.length === 0) // PPP
  )
}

/** A promise with its resolver, for gates in handlers. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined
  const promise = new Promise<void>((r) => (open = r))
  return { promise, open }
}

// ---------------------------------------------------------------------------------------------
// the queue core under fire: shared by the Sender and the ParanoidPirateQueue backend

/** A role built on the queue core, seen through its public API. */
export interface CoreTarget {
  /** Where workers connect. */
  readonly endpoint: string
  stats(): { dropped: number; staleAcks: number; inFlight: number; workers: number; acked: number }
  /** Sends a payload to some worker and resolves with its reply. */
  request(payload: unknown): Promise<unknown>
}

/**
 * The legitimate worker's handler: echoes its payload, and holds payloads that carry this
 * handler's secret `hold` token until `release()`, so that messages are in flight while the
 * garbage arrives. Garbage cannot guess the token.
 */
export class HoldingEcho {
  readonly token = `hold-${Math.random().toString(36).slice(2)}`
  /** Calls by payload `n`. */
  readonly calls = new Map<number, number>()
  /** Envelopes (id, attempt) of the held messages. */
  held: Envelope[] = []
  #gate = gate()

  readonly handler = async (p: unknown, ctx: { id: string; attempt: number }): Promise<unknown> => {
    if (typeof p === "object" && p !== null) {
      const o = p as { n?: unknown; hold?: unknown }
      if (typeof o.n === "number") this.calls.set(o.n, (this.calls.get(o.n) ?? 0) + 1)
      if (o.hold === this.token) {
        this.held.push({ id: ctx.id, attempt: ctx.attempt })
        await this.#gate.promise
      }
    }
    return p
  }

  release(): void {
    this.#gate.open()
    this.#gate = gate()
    this.held = []
  }
}

/** The barrier: a valid PPX READY, answered by a WELCOME once everything before it was read. */
const BARRIER_HELLO = { credit: 1, heartbeatInterval: 60_000, liveness: 3 }
const isWelcome = (m: readonly Buffer[]): boolean =>
  m.length === 2 && m[0]?.length === 1 && m[0][0] === PPX.WELCOME

/**
 * One fuzz run against the queue core:
 * 1. two requests are put in flight at the legitimate worker (held by `echo`);
 * 2. a fresh DEALER sends the garbage `specs` (forged envelopes resolved against those two),
 *    then a valid PPX READY as a barrier, and waits for the WELCOMEs;
 * 3. checks: definitely malformed messages counted in `dropped`, forged acks in `staleAcks`,
 *    nothing double counted, the two requests neither settled nor moved, no task sent to the
 *    hostile peer;
 * 4. closes the hostile peer, releases the held messages and checks that each request resolves
 *    with its own payload, that each was handled exactly once and acked exactly once, and that
 *    a fresh request still completes.
 */
export async function coreRun(
  target: CoreTarget,
  echo: HoldingEcho,
  specs: readonly MessageSpec[],
  seq: { n: number },
): Promise<void> {
  const before = target.stats()
  const payloads = [0, 1].map(() => ({ hold: echo.token, n: seq.n++ }))
  const settled: unknown[] = []
  const pending = payloads.map((p) => target.request(p))
  for (const p of pending)
    void p.then(
      (v) => settled.push(v),
      (e: unknown) => settled.push(e),
    )
  const fuzz = new Dealer({ linger: 0 })
  const inbox = new Inbox(fuzz)
  try {
    await waitFor(() => expect(echo.held.length, "2 messages in flight at the worker").toBe(2))
    const inflight = [...echo.held]
    fuzz.connect(target.endpoint)
    const want = { dropped: 0, stale: 0, most: 0, welcomes: 1 }
    for (const spec of specs) {
      const frames = materialize(spec, inflight)
      const e = expectFromDispatcher(frames)
      want.dropped += e.dropped
      want.stale += e.stale
      want.most += e.most
      if (e.welcome) want.welcomes++
      await fuzz.send(frames)
    }
    await fuzz.send(encodeReady(BARRIER_HELLO))
    await inbox.waitForCount(isWelcome, want.welcomes, `${want.welcomes} WELCOMEs`)
    const after = target.stats()
    const dropped = after.dropped - before.dropped
    const stale = after.staleAcks - before.staleAcks
    expect(dropped, "definitely malformed messages are counted").toBeGreaterThanOrEqual(
      want.dropped,
    )
    expect(stale, "forged acks are counted as stale").toBeGreaterThanOrEqual(want.stale)
    expect(dropped + stale, "nothing is counted twice").toBeLessThanOrEqual(want.most)
    expect(settled, "forged acks/nacks settle nothing").toEqual([])
    expect(after.inFlight, "the held messages stay in flight").toBe(before.inFlight + 2)
    expect(inbox.messages.filter(isTask), "no work is sent to the hostile peer").toEqual([])
  } catch (err) {
    echo.release()
    throw err
  } finally {
    fuzz.close()
  }
  await waitFor(() =>
    expect(target.stats().workers, "the hostile peer to leave").toBe(before.workers),
  )
  echo.release()
  expect(await Promise.all(pending), "each request gets its own reply").toEqual(payloads)
  for (const p of payloads) expect(echo.calls.get(p.n), `calls of message ${p.n}`).toBe(1)
  const fresh = { n: seq.n++ }
  expect(await target.request(fresh)).toEqual(fresh)
  expect(target.stats().acked - before.acked, "acked exactly once each").toBe(3)
}
