/**
 * Hostile input to a `Sender`: random and structured garbage from a peer on its worker socket,
 * forged envelopes naming messages in flight to another worker, and a forged routing id.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Dealer } from "zeromq"
import { Sender, Worker } from "../../patterns/index.js"
import {
  FRAME_ACKS,
  packBodies,
  packEnvelopes,
  FRAME_EMPTY,
  FRAME_EXTEND,
  FRAME_NACK,
  FRAME_READY,
  decodeEnvelope,
  encodeReady,
} from "../../lib/protocol.js"
import { packMeta } from "../../lib/codec.js"
import { bytes, randomMessage, toSenderMessage } from "./arbitraries.js"
import { guardProcess } from "./guard.js"
import { HoldingEcho, Inbox, coreRun, type CoreTarget } from "./peers.js"
import { waitFor } from "../helpers/wait.js"

const guard = guardProcess()

describe("Sender under hostile input", () => {
  const echo = new HoldingEcho()
  const seq = { n: 0 }
  let sender: Sender
  let worker: Worker
  let target: CoreTarget

  beforeAll(async () => {
    sender = await Sender.open({ bind: "tcp://127.0.0.1:*", heartbeatInterval: 100 })
    guard.watch(sender)
    worker = await Worker.open({
      connect: sender.endpoint,
      handler: echo.handler,
      concurrency: 4,
      heartbeatInterval: 100,
      reconnect: { initial: 20, max: 200 },
      closeTimeout: 500,
    })
    guard.watch(worker)
    await waitFor(() => expect(sender.stats().workers, "the worker").toBe(1))
    target = {
      endpoint: sender.endpoint,
      stats: () => sender.stats(),
      request: (p) => sender.request(p),
    }
  })

  afterAll(async () => {
    await worker.close()
    await sender.close()
  })

  it("property: structured garbage and forged envelopes are counted and change nothing", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(toSenderMessage, { minLength: 1, maxLength: 10 }), async (specs) =>
        coreRun(target, echo, specs, seq),
      ),
      { numRuns: 150 },
    )
  }, 60_000)

  it("property: random multipart messages (1–6 frames of 0–64 bytes) are counted and change nothing", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(randomMessage, { minLength: 1, maxLength: 10 }), async (specs) =>
        coreRun(target, echo, specs, seq),
      ),
      { numRuns: 100 },
    )
  }, 60_000)

  it("property: an EXTEND with an envelope that is not ours is counted as dropped", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          bytes().filter((b) => decodeEnvelope(b) === null),
          { minLength: 1, maxLength: 3 },
        ),
        async (envs) => {
          const before = sender.stats().dropped
          const peer = new Dealer({ linger: 0 })
          const inbox = new Inbox(peer)
          try {
            peer.connect(sender.endpoint)
            await peer.send([FRAME_EXTEND, ...envs])
            await peer.send(encodeReady({ credit: 1, heartbeatInterval: 60_000, liveness: 3 }))
            await inbox.waitFor((m) => m[0]?.[0] === 0x10, "WELCOME")
            expect(sender.stats().dropped - before).toBeGreaterThanOrEqual(1)
          } finally {
            peer.close()
          }
          await waitFor(() => expect(sender.stats().workers, "the peer to leave").toBe(1))
        },
      ),
      { numRuns: 20 },
    )
  }, 30_000)

  it("ignores a peer that forges the routing id of the worker holding a message", async () => {
    const before = sender.stats()
    // A plain PPP worker with a chosen routing id takes the next request...
    const victim = new Dealer({ linger: 0, routingId: "victim-1" })
    const victimInbox = new Inbox(victim)
    const forger = new Dealer({ linger: 0, routingId: "victim-1" })
    const forgerInbox = new Inbox(forger)
    // The legit worker is kept busy first, so that the next request goes to the victim.
    const busy = [0, 1, 2, 3].map(() => sender.request({ hold: echo.token, n: seq.n++ }))
    const busyDone = Promise.allSettled(busy)
    try {
      await waitFor(() => expect(echo.held.length, "the legit worker to be busy").toBe(4))
      victim.connect(sender.endpoint)
      await victim.send(FRAME_READY)
      await waitFor(() => expect(sender.stats().workers, "the victim to register").toBe(2))
      const settled: unknown[] = []
      const reply = sender.request({ n: seq.n++, to: "victim" })
      void reply.then(
        (v) => settled.push(v),
        (e: unknown) => settled.push(e),
      )
      const task = await victimInbox.waitFor((m) => m.length === 3, "the task at the victim")
      const envelope = task[0] as Buffer
      expect(decodeEnvelope(envelope)).toMatchObject({ attempt: 1 })
      // A second peer claims the same routing id and forges every kind of ack for that task.
      const handshake = (async () => {
        for await (const event of forger.events) if (event.type === "handshake") return
      })()
      forger.connect(sender.endpoint)
      await handshake
      await forger.send([envelope, FRAME_EMPTY, packMeta("forged")])
      await forger.send([FRAME_ACKS, packEnvelopes([envelope]), packBodies([packMeta("forged")])])
      await forger.send([FRAME_NACK, envelope, packMeta({ error: "forged", reject: true })])
      await forger.send(encodeReady({ credit: 1, heartbeatInterval: 60_000, liveness: 3 }))
      // Without `handover` the ROUTER keeps the first peer and never reads the impostor's
      // connection: nothing it sends arrives, so there is no event to wait for. Absence can
      // only be checked over time; 50 ms is plenty on loopback for frames already written.
      await new Promise((r) => setTimeout(r, 50))
      expect(settled, "the forged acks settle nothing").toEqual([])
      expect(forgerInbox.messages, "the impostor is never answered").toEqual([])
      expect(sender.stats().dropped - before.dropped, "never read, so never counted").toBe(0)
      await victim.send([envelope, FRAME_EMPTY, packMeta({ n: -1, from: "victim" })])
      expect(await reply).toEqual({ n: -1, from: "victim" })
      echo.release()
      expect(await Promise.all(busy)).toHaveLength(4)
      expect(sender.stats().acked - before.acked).toBe(5)
      expect(sender.stats().staleAcks - before.staleAcks).toBe(0)
    } finally {
      echo.release()
      victim.close()
      forger.close()
      await busyDone
    }
    await waitFor(() =>
      expect(sender.stats().workers, "the victim and the forger to leave").toBe(1),
    )
  })
})
