/**
 * Hostile input to a `ParanoidPirateQueue`: garbage on its backend (the queue core, as for the
 * Sender) and on its frontend (malformed Lazy Pirate requests), and payloads workers cannot
 * decode.
 */
import { once } from "node:events"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Dealer } from "zeromq"
import { LazyPirateClient, ParanoidPirateQueue, Worker } from "../../patterns/index.js"
import { msgpackCodec } from "../../lib/codec.js"
import {
  FRAME_EMPTY,
  LPX_ERROR,
  LPX_OK,
  encodeReplyStatus,
  encodeRequestHeader,
} from "../../lib/protocol.js"
import { randomMessage, toSenderMessage, toServerMessage } from "./arbitraries.js"
import { guardProcess } from "./guard.js"
import { decodeRemoteError, echoOf, expectFromFrontend, keyOf } from "./oracles.js"
import { HoldingEcho, Inbox, coreRun, type CoreTarget } from "./peers.js"
import { waitFor } from "../helpers/wait.js"

const guard = guardProcess()
const OK = encodeReplyStatus(LPX_OK)
const ERROR = encodeReplyStatus(LPX_ERROR)

describe("ParanoidPirateQueue under hostile input", () => {
  const echo = new HoldingEcho()
  const seq = { n: 0 }
  let queue: ParanoidPirateQueue
  let worker: Worker
  let client: LazyPirateClient
  let target: CoreTarget

  beforeAll(async () => {
    queue = await ParanoidPirateQueue.open({
      frontend: "tcp://127.0.0.1:*",
      backend: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
      maxAttempts: 2,
      retryBackoff: { initial: 5, max: 20 },
    })
    guard.watch(queue)
    worker = await Worker.open({
      connect: queue.backendEndpoint,
      handler: echo.handler,
      concurrency: 4,
      heartbeatInterval: 100,
      reconnect: { initial: 20, max: 200 },
      closeTimeout: 500,
    })
    guard.watch(worker)
    client = new LazyPirateClient({ connect: queue.frontendEndpoint, timeout: 10_000, retries: 1 })
    await waitFor(() => expect(queue.stats().workers, "the worker").toBe(1))
    target = {
      endpoint: queue.backendEndpoint,
      stats: () => queue.stats(),
      request: (p) => client.request(p),
    }
  })

  afterAll(async () => {
    await client.close()
    await worker.close()
    await queue.close()
  })

  it("property: backend garbage and forged envelopes are counted and change nothing", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(toSenderMessage, randomMessage), { minLength: 1, maxLength: 10 }),
        async (specs) => coreRun(target, echo, specs, seq),
      ),
      { numRuns: 100 },
    )
  }, 60_000)

  describe("frontend", () => {
    let peer: Dealer
    let inbox: Inbox
    /** Replies the hostile client may legitimately get, by key; error replies by message tail. */
    const okReplies = new Set<string>()
    const errorTails = new Set<string>()
    const byId = new Map<string, Buffer[]>()
    let barrier = 0

    beforeAll(() => {
      peer = new Dealer({ linger: 0 })
      inbox = new Inbox(peer)
      peer.connect(queue.frontendEndpoint)
    })
    afterAll(() => peer.close())

    /** Sends the messages then a framed request as a barrier; returns the expected counts. */
    async function send(
      messages: readonly Buffer[][],
    ): Promise<{ requests: number; dropped: number }> {
      const want = { requests: 1, dropped: 0 }
      for (const frames of messages) {
        const v = expectFromFrontend(frames)
        if (v.kind === "dropped") want.dropped++
        else {
          want.requests++
          const echoed = echoOf(v.body)
          if (v.id === undefined) {
            if (echoed.kind === "ok") okReplies.add(keyOf([FRAME_EMPTY, echoed.reply]))
          } else {
            // A retry of a request in flight joins it: any body sent under that id may answer.
            const bodies = byId.get(v.id) ?? []
            bodies.push(v.body)
            byId.set(v.id, bodies)
            if (echoed.kind === "ok") okReplies.add(keyOf([FRAME_EMPTY, OK, echoed.reply]))
            else errorTails.add(echoed.error.message)
          }
        }
        await peer.send(frames)
      }
      const mark = { barrier: barrier++ }
      await peer.send([
        FRAME_EMPTY,
        encodeRequestHeader(`barrier-${mark.barrier}`),
        msgpackCodec.encode(mark),
      ])
      const expected = keyOf([FRAME_EMPTY, OK, msgpackCodec.encode(mark)])
      okReplies.add(expected)
      await inbox.waitFor((m) => keyOf(m) === expected, "the barrier's reply")
      return want
    }

    /** Every reply the hostile client got answers one of its own requests, with the right body. */
    function checkReplies(): void {
      for (const m of inbox.messages) {
        if (okReplies.has(keyOf(m))) continue
        expect(m.length, `unexpected reply ${keyOf(m)}`).toBe(3)
        expect(m[0]).toEqual(FRAME_EMPTY)
        expect(m[1]).toEqual(ERROR)
        const { message } = decodeRemoteError(m[2])
        expect(
          [...errorTails].some((tail) => message.endsWith(tail)),
          `error reply "${message}" answers none of the requests`,
        ).toBe(true)
      }
    }

    it("property: malformed requests are dropped, well-formed ones answered to their sender only", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(toServerMessage, { minLength: 1, maxLength: 10 }),
          async (messages) => {
            const before = queue.stats()
            const want = await send(messages)
            const after = queue.stats()
            expect(after.requests - before.requests).toBe(want.requests)
            checkReplies()
          },
        ),
        { numRuns: 150 },
      )
      const fresh = { n: seq.n++ }
      expect(await client.request(fresh)).toEqual(fresh)
    }, 60_000)

    it("property: malformed frontend requests are counted in stats().dropped", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            toServerMessage.filter((m) => expectFromFrontend(m).kind === "dropped"),
            { minLength: 1, maxLength: 5 },
          ),
          async (messages) => {
            const before = queue.stats()
            const want = await send(messages)
            expect(queue.stats().dropped - before.dropped).toBeGreaterThanOrEqual(want.dropped)
          },
        ),
        { numRuns: 20 },
      )
    }, 30_000)
  })

  it("rejects a payload the worker cannot decode to the dead letters, with the decode error", async () => {
    const raw = new LazyPirateClient({
      connect: queue.frontendEndpoint,
      codec: "raw",
      framed: true,
      timeout: 5000,
      retries: 1,
    })
    try {
      const before = worker.stats()
      const dead = once(queue, "message:dead", { signal: AbortSignal.timeout(5000) })
      await expect(raw.request(Buffer.from([0xc1]))).rejects.toMatchObject({
        code: "PIRATE_REMOTE",
        message: expect.stringMatching(/dead-lettered after 1 attempt: .*msgpack/) as unknown,
      })
      const [event] = (await dead) as [{ attempts: number; error: string }]
      expect(event).toMatchObject({
        attempts: 1,
        error: expect.stringMatching(/msgpack/) as unknown,
      })
      expect(worker.stats().acked - before.acked).toBe(0)
      expect(worker.stats().nacked - before.nacked).toBe(1)
    } finally {
      await raw.close()
    }
  })
})
