/**
 * Hostile input to a `Worker`: a raw ROUTER plays its sender (takes the READY, answers WELCOME),
 * puts two jobs in flight, then sends random and structured garbage, forged tasks that reuse the
 * envelopes of the jobs in flight, and payloads the worker cannot decode.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Router } from "zeromq"
import { Worker } from "../../patterns/index.js"
import { msgpackCodec, packMeta } from "../../lib/codec.js"
import {
  FRAME_EMPTY,
  FRAME_HEARTBEAT,
  FRAME_TASKS,
  PPP,
  PPX,
  decodeNack,
  encodeEnvelope,
  packBodies,
  packEnvelopes,
  type Envelope,
} from "../../lib/protocol.js"
import { materialize, toWorkerMessage, type MessageSpec } from "./arbitraries.js"
import { guardProcess } from "./guard.js"
import { batchOf, echoOf, expectFromWorker } from "./oracles.js"
import { Inbox, gate } from "./peers.js"
import { waitFor } from "../helpers/wait.js"

const guard = guardProcess()
const hex = (b: Buffer | undefined): string => b?.toString("hex") ?? "-"
const WELCOME = [
  Buffer.from([PPX.WELCOME]),
  packMeta({ version: 1, heartbeatInterval: 1000, liveness: 3 }),
]

/** One thing a worker sent back: an ack (PPX), a reply (PPP) or a nack. */
type Entry = string
const ack = (env: Buffer, reply: Buffer): Entry => `ack ${hex(env)} ${hex(reply)}`
const reply = (env: Buffer, body: Buffer): Entry => `reply ${hex(env)} ${hex(body)}`
const nack = (env: Buffer, reject: boolean): Entry =>
  `nack ${hex(env)} ${reject ? "reject" : "retry"}`

/** The readings of a message from the worker (PPP replies and PPX frames can look alike). */
function readings(frames: readonly Buffer[]): Entry[][] {
  const out: Entry[][] = []
  const f = frames[0]
  const n = frames.length
  if (
    n === 1 &&
    f?.length !== undefined &&
    f.length >= 1 &&
    (f[0] === PPP.HEARTBEAT || f[0] === PPP.READY || f[0] === PPX.GOODBYE)
  )
    return [[]]
  if (n === 3 && frames[1]?.length === 0) out.push([reply(f as Buffer, frames[2] as Buffer)])
  if (f?.length === 1 && f[0] === PPX.ACKS) {
    // [0x12, envelopes, replies]; a malformed ACKS is read as nothing but "unexpected"
    const acks = batchOf(frames)
    if (acks) out.push(acks.map(([e, r]) => ack(e, r)))
  }
  if (f?.length === 1 && f[0] === PPX.NACK && n === 3) {
    try {
      out.push([nack(frames[1] as Buffer, decodeNack(frames[2]).reject === true)])
    } catch {
      /* not a nack */
    }
  }
  if (out.length === 0) out.push([`unexpected ${frames.map(hex).join(" ")}`])
  return out
}

/** Counts what the worker sent (from inbox index `from` on), resolving ambiguous readings by `expected`. */
function responses(
  messages: readonly Buffer[][],
  expected: ReadonlyMap<Entry, number>,
): Map<Entry, number> {
  const got = new Map<Entry, number>()
  for (const m of messages) {
    const options = readings(m.slice(1))
    const pick =
      options.find((entries) => entries.every((e) => (expected.get(e) ?? 0) > (got.get(e) ?? 0))) ??
      options[0] ??
      []
    for (const e of pick) got.set(e, (got.get(e) ?? 0) + 1)
  }
  return got
}

const add = (map: Map<Entry, number>, e: Entry): void => {
  map.set(e, (map.get(e) ?? 0) + 1)
}
const total = (map: ReadonlyMap<Entry, number>): number =>
  [...map.values()].reduce((a, b) => a + b, 0)

describe("Worker under hostile input", () => {
  const token = `hold-${Math.random().toString(36).slice(2)}`
  let started = 0
  let hold = gate()
  let router: Router
  let inbox: Inbox
  let worker: Worker
  const welcomed = new Set<string>()
  let current: Buffer | undefined
  let seq = 0

  /** Welcomes the newest session of the worker (a READY from a routing id not seen yet). */
  async function newSession(): Promise<Buffer> {
    const ready = await inbox.waitFor(
      (m) => m.length === 2 && m[1]?.[0] === PPP.READY && !welcomed.has(hex(m[0])),
      "a READY from a new session",
    )
    const id = ready[0] as Buffer
    welcomed.add(hex(id))
    await router.send([id, ...WELCOME])
    current = id
    return id
  }

  beforeAll(async () => {
    router = new Router({ linger: 0 })
    await router.bind("tcp://127.0.0.1:*")
    inbox = new Inbox(router)
    worker = await Worker.open({
      connect: router.lastEndpoint as string,
      concurrency: 8,
      heartbeatInterval: 1000,
      liveness: 3,
      reconnect: { initial: 20, max: 100 },
      closeTimeout: 200,
      handler: async (p) => {
        if (typeof p === "object" && p !== null && (p as { hold?: unknown }).hold === token) {
          started++
          await hold.promise
        }
        return p
      },
    })
    guard.watch(worker)
    await newSession()
  })

  afterAll(async () => {
    hold.open()
    await worker.close()
    router.close()
  })

  async function run(specs: readonly MessageSpec[]): Promise<void> {
    const before = worker.stats()
    const id = current as Buffer
    const from = inbox.messages.length
    const expected = new Map<Entry, number>()
    await router.send([id, FRAME_HEARTBEAT])
    // Two jobs in flight (held by the handler) before the garbage.
    const held = [0, 1].map((k) => {
      const env: Envelope = { id: (seq * 2 + k).toString(16).padStart(16, "0"), attempt: 1 }
      return {
        env,
        frame: encodeEnvelope(env.id, 1),
        body: msgpackCodec.encode({ hold: token, n: seq * 2 + k }),
      }
    })
    seq++
    const startedBefore = started
    await router.send([
      id,
      FRAME_TASKS,
      packEnvelopes(held.map((h) => h.frame)),
      packBodies(held.map((h) => h.body)),
    ])
    await waitFor(() => expect(started, "2 jobs in flight").toBe(startedBefore + 2))
    const heldAcks = held.map((h) => ack(h.frame, h.body))

    let goodbye = false
    let dropped = 0
    for (const spec of specs) {
      const frames = materialize(
        spec,
        held.map((h) => h.env),
      )
      if (!goodbye) {
        const verdict = expectFromWorker(frames)
        if (verdict === "dropped") dropped++
        else if (verdict === "goodbye") goodbye = true
        else if (verdict === "task") {
          const e = echoOf(frames[2] as Buffer)
          // A plain PPP task has no nack: a payload that fails gets no answer.
          if (e.kind === "ok") add(expected, reply(frames[0] as Buffer, e.reply))
        } else if (verdict === "tasks") {
          // [0x11, envelopes, bodies]
          for (const [env, body] of batchOf(frames) ?? []) {
            const e = echoOf(body)
            if (e.kind === "ok") add(expected, ack(env, e.reply))
            else add(expected, nack(env, e.kind === "undecodable"))
          }
        }
      }
      await router.send([id, ...frames])
    }

    // Barrier: a plain task answered once everything before it was read (on the new session
    // when the garbage said GOODBYE).
    const session = goodbye ? await newSession() : id
    const mark = msgpackCodec.encode({ barrier: seq })
    const envB = encodeEnvelope(`b${seq.toString(16).padStart(15, "0")}`, 1)
    add(expected, reply(envB, mark))
    await router.send([session, envB, FRAME_EMPTY, mark])
    await inbox.waitFor(
      (m) => m.length === 4 && m[1]?.equals(envB) === true && m[3]?.equals(mark) === true,
      "the barrier's reply",
      5000,
      from,
    )
    const afterGarbage = worker.stats()
    expect(
      afterGarbage.dropped - before.dropped,
      "malformed messages are counted",
    ).toBeGreaterThanOrEqual(dropped)
    expect(afterGarbage.dropped - before.dropped).toBeLessThanOrEqual(specs.length)

    hold.open()
    hold = gate()
    if (!goodbye) {
      for (const e of heldAcks) add(expected, e)
      // Every job is answered exactly once, with its own envelope and reply; nothing else is sent.
      await waitFor(() =>
        expect(
          total(responses(inbox.messages.slice(from), expected)),
          "every answer",
        ).toBeGreaterThanOrEqual(total(expected)),
      )
      await new Promise((r) => setImmediate(r))
      expect(responses(inbox.messages.slice(from), expected)).toEqual(expected)
    } else {
      // The session ended: the jobs in flight are discarded (the sender redelivers them), and
      // whatever was answered before the GOODBYE was an answer to one of our tasks.
      await waitFor(() =>
        expect(
          worker.stats().discarded - before.discarded,
          "held jobs discarded",
        ).toBeGreaterThanOrEqual(2),
      )
      const got = responses(inbox.messages.slice(from), expected)
      for (const [e, n] of got) expect(n, `answer ${e}`).toBeLessThanOrEqual(expected.get(e) ?? 0)
      for (const e of heldAcks)
        expect(got.get(e) ?? 0, "held job acked after its session ended").toBe(0)
    }
  }

  it("property: garbage from the sender is counted; every real job is answered exactly once", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(toWorkerMessage, { minLength: 1, maxLength: 10 }), run),
      { numRuns: 100 },
    )
  }, 60_000)
})
