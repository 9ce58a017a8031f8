/**
 * How a worker runs its handler: one that answers at once (no promise) is acked or nacked in the
 * same turn, one that returns a promise when it settles; either way each task's STARTED goes out
 * before its ack, acks travel in ACKS of at most `maxBatch`, and a long queue of quick jobs
 * behind a slow one drains without growing the stack. The wire is checked with a raw ROUTER
 * playing the sender.
 */
import { once, type EventEmitter } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import { Router } from "zeromq"
import {
  PPX,
  decodeEnvelope,
  decodeNack,
  decodeReady,
  encodeEnvelope,
  encodeWelcome,
  packBodies,
  packEnvelopes,
  unpackBodies,
  unpackEnvelopes,
} from "../../lib/protocol.js"
import { msgpackCodec } from "../../lib/codec.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

const signal = (ms = 10_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })
const TASKS = Buffer.from([PPX.TASKS])

/** A raw ROUTER for a worker to connect to; closed when the test finishes. */
async function router(): Promise<Router> {
  const r = new Router({ linger: 0, receiveTimeout: 5000 })
  onTestFinished(() => r.close())
  await r.bind("tcp://127.0.0.1:*")
  return r
}

/**
 * Plays the sender to `worker` on `r`: takes its READY, answers with a WELCOME (with `started`
 * when asked), waits until the worker takes it; returns a function that sends it frames.
 */
async function welcomed(
  r: Router,
  worker: EventEmitter,
  started: boolean,
): Promise<(...frames: Buffer[]) => Promise<void>> {
  const [id, ready] = await r.receive()
  expect(decodeReady(ready as Buffer)?.started).toBe(true)
  const to = (...frames: Buffer[]): Promise<void> => r.send([id as Buffer, ...frames])
  await to(
    ...encodeWelcome({
      version: PPX.VERSION,
      heartbeatInterval: 60_000,
      liveness: 3,
      ...(started ? { started: true as const } : {}),
    }),
  )
  await once(worker, "sender:ready", signal())
  return to
}

/** The ids in a packed envelopes frame. */
function ids(frame: Buffer | undefined): string[] {
  return (unpackEnvelopes(frame) ?? []).map((e) => decodeEnvelope(e)?.id ?? "?")
}

/** One TASKS frame of msgpack payloads `payloads`, with the ids `t<first + i>`. */
function tasks(first: number, payloads: unknown[]): Buffer[] {
  const envelopes = payloads.map((_, i) => encodeEnvelope(`t${first + i}`, 1))
  const bodies = payloads.map((p) => msgpackCodec.encode(p))
  return [TASKS, packEnvelopes(envelopes), packBodies(bodies)]
}

/** Messages from `r` (its routing id dropped) until `done` says enough, heartbeats left out. */
async function collect(r: Router, done: (got: Buffer[][]) => boolean): Promise<Buffer[][]> {
  const got: Buffer[][] = []
  while (!done(got)) {
    const [, ...msg] = await r.receive()
    if (msg.length === 1 && msg[0]?.length === 1 && msg[0][0] === PPP_HEARTBEAT) continue
    got.push(msg)
  }
  return got
}
const PPP_HEARTBEAT = 0x02

describe("Worker handlers", () => {
  it("sends each task's STARTED before its ack, in ACKS of at most maxBatch, sync and async handlers alike", async () => {
    const r = await router()
    const worker = await openWorker(r.lastEndpoint as string, {
      concurrency: 8,
      prefetch: 64,
      maxBatch: 4,
      heartbeatInterval: 60_000,
      handler: (p) => {
        const n = p as number
        // Every third answers through a promise, the others at once.
        return n % 3 === 0 ? Promise.resolve(n * 10) : n * 10
      },
    })
    const to = await welcomed(r, worker, true)
    const payloads = Array.from({ length: 22 }, (_, i) => i)
    await to(...tasks(0, payloads))
    const acked = new Map<string, number>()
    const started = new Set<string>()
    const count = (g: Buffer[][]): number =>
      g.reduce((n, m) => n + (m[0]?.[0] === PPX.ACKS ? ids(m[1]).length : 0), 0)
    const got = await collect(r, (g) => count(g) === payloads.length)
    for (const msg of got) {
      const cmd = msg[0]?.[0]
      if (cmd === PPX.STARTED) for (const id of ids(msg[1])) started.add(id)
      else if (cmd === PPX.ACKS) {
        const envelopes = ids(msg[1])
        const replies = unpackBodies(msg[2], envelopes.length) ?? []
        expect(envelopes.length).toBeLessThanOrEqual(4)
        envelopes.forEach((id, i) => {
          expect(started.has(id)).toBe(true) // its STARTED came first
          expect(acked.has(id)).toBe(false) // acked once
          acked.set(id, msgpackCodec.decode(replies[i] as Buffer) as number)
        })
      } else throw new Error(`unexpected command ${String(cmd)}`)
    }
    expect(new Map([...acked].sort(([a], [b]) => Number(a.slice(1)) - Number(b.slice(1))))).toEqual(
      new Map(payloads.map((n) => [`t${n}`, n * 10])),
    )
    expect(worker.stats()).toMatchObject({ received: 22, acked: 22, nacked: 0, running: 0 })
    expect(worker.stats().handlerLatency.count).toBe(22)
  })

  it("acks what a sync handler returns in one ACKS at the end of the turn; a sync throw nacks with job:failed", async () => {
    const r = await router()
    const worker = await openWorker(r.lastEndpoint as string, {
      concurrency: 4,
      prefetch: 16,
      heartbeatInterval: 60_000,
      handler: (p) => {
        if (p === "bad") throw new Error("no good")
        return p
      },
    })
    const failed: { id: string; error: Error }[] = []
    worker.on("job:failed", (e) => failed.push(e))
    const to = await welcomed(r, worker, false)
    await to(...tasks(0, ["a", "bad", "c"]))
    const got = await collect(r, (g) => g.length === 2)
    // The nack flushes what is pending first (the ack of a), then the rest goes in one ACKS.
    expect(got.map((m) => m[0]?.[0])).toEqual([PPX.ACKS, PPX.NACK])
    const nack = got[1] as Buffer[]
    expect(decodeEnvelope(nack[1])?.id).toBe("t1")
    expect(decodeNack(nack[2])).toEqual({ error: "no good" })
    expect(failed.map((e) => [e.id, e.error.message])).toEqual([["t1", "no good"]])
    const [last] = await collect(r, (g) => g.length === 1)
    expect(last?.[0]?.[0]).toBe(PPX.ACKS)
    expect([...ids((got[0] as Buffer[])[1]), ...ids(last?.[1])]).toEqual(["t0", "t2"])
    expect(worker.stats()).toMatchObject({ received: 3, acked: 2, nacked: 1 })
  })

  it("drains a long queue of quick jobs behind a slow one without growing the stack", async () => {
    const count = 30_000
    // The quick jobs run back to back, in one turn of the event loop: slow heartbeats.
    const sender = await openSender({ window: count + 1, heartbeatInterval: 1000 })
    let release: (() => void) | undefined
    const gate = new Promise<void>((resolve) => (release = resolve))
    let calls = 0
    const worker = await openWorker(sender.endpoint, {
      concurrency: 1,
      prefetch: count + 1,
      heartbeatInterval: 1000,
      liveness: 10,
      handler: (p) => {
        calls++
        return p === "slow" ? gate.then(() => "done") : null
      },
    })
    const slow = sender.request("slow")
    await Promise.all(Array.from({ length: count }, (_, i) => sender.send(i)))
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (worker.stats().queued >= count) resolve()
        else setTimeout(check, 10)
      }
      check()
    })
    release?.()
    expect(await slow).toBe("done")
    await sender.drained(signal(20_000))
    expect(calls).toBe(count + 1)
    expect(worker.stats()).toMatchObject({ acked: count + 1, running: 0, queued: 0 })
  }, 30_000)
})
