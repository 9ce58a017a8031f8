/**
 * Hostile input to a `LazyPirateServer`: random frames, missing delimiters, extra envelope
 * frames, bad LPX/1 headers, retries under a reused request id, and payloads it cannot decode.
 */
import { once } from "node:events"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Dealer } from "zeromq"
import { LazyPirateClient, LazyPirateServer } from "../../patterns/index.js"
import { msgpackCodec } from "../../lib/codec.js"
import {
  FRAME_EMPTY,
  LPX_ERROR,
  LPX_OK,
  encodeReplyStatus,
  encodeRequestHeader,
} from "../../lib/protocol.js"
import { toServerMessage } from "./arbitraries.js"
import { guardProcess } from "./guard.js"
import { echoOf, expectFromServer, keyOf, remoteErrorOf } from "./oracles.js"
import { Inbox } from "./peers.js"

const guard = guardProcess()
const OK = encodeReplyStatus(LPX_OK)
const ERROR = encodeReplyStatus(LPX_ERROR)

describe("LazyPirateServer under hostile input", () => {
  let server: LazyPirateServer
  let calls = 0

  beforeAll(async () => {
    server = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      replyCache: true,
      handler: (p) => {
        calls++
        return p
      },
    })
    guard.watch(server)
  })
  afterAll(() => server.close())

  it("property: every message is a request or a counted drop; replies reach their sender with the right body", async () => {
    const peer = new Dealer({ linger: 0 })
    const inbox = new Inbox(peer)
    peer.connect(server.endpoint)
    /** Every reply the hostile client may get: its request's envelope, then status and body. */
    const replies = new Set<string>()
    /** Reply tails by request id: a retry (or a cache hit) gets the first try's reply. */
    const tails = new Map<string, Buffer[][]>()
    let barrier = 0
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(toServerMessage, { minLength: 1, maxLength: 10 }),
          async (messages) => {
            const before = server.stats()
            const want = { requests: 1, dropped: 0 }
            for (const frames of messages) {
              const v = expectFromServer(frames)
              if (v.kind === "dropped") want.dropped++
              else {
                want.requests++
                const e = echoOf(v.body)
                if (v.id === undefined) {
                  // A plain request that fails gets no reply (there is no error channel).
                  if (e.kind === "ok") replies.add(keyOf([...v.prefix, e.reply]))
                } else {
                  const tail = e.kind === "ok" ? [OK, e.reply] : [ERROR, remoteErrorOf(e.error)]
                  const list = tails.get(v.id) ?? []
                  list.push(tail)
                  tails.set(v.id, list)
                  for (const t of list) replies.add(keyOf([...v.prefix, ...t]))
                }
              }
              await peer.send(frames)
            }
            const mark = msgpackCodec.encode({ barrier: barrier++ })
            const expected = [FRAME_EMPTY, OK, mark]
            replies.add(keyOf(expected))
            await peer.send([FRAME_EMPTY, encodeRequestHeader(`barrier-${barrier}`), mark])
            await inbox.waitFor((m) => keyOf(m) === keyOf(expected), "the barrier's reply")
            const after = server.stats()
            expect(after.requests - before.requests, "well-formed requests").toBe(want.requests)
            expect(after.dropped - before.dropped, "malformed messages are counted").toBe(
              want.dropped,
            )
            for (const m of inbox.messages)
              expect(replies.has(keyOf(m)), `unexpected reply ${keyOf(m)}`).toBe(true)
          },
        ),
        { numRuns: 200 },
      )
    } finally {
      peer.close()
    }
    const client = new LazyPirateClient({ connect: server.endpoint, timeout: 2000, retries: 1 })
    try {
      expect(await client.request({ still: "serving" })).toEqual({ still: "serving" })
    } finally {
      await client.close()
    }
  }, 60_000)

  it("answers a framed request it cannot decode with the decode error; the handler never runs", async () => {
    const client = new LazyPirateClient({
      connect: server.endpoint,
      codec: "raw",
      framed: true,
      timeout: 2000,
      retries: 1,
    })
    try {
      const before = { ...server.stats(), calls }
      await expect(client.request(Buffer.from([0xc1]))).rejects.toMatchObject({
        code: "PIRATE_REMOTE",
        remoteName: "PirateError",
        message: expect.stringMatching(/not valid msgpack/) as unknown,
      })
      await expect(client.request(Buffer.alloc(0))).rejects.toMatchObject({
        code: "PIRATE_REMOTE",
        message: expect.stringMatching(/empty frame/) as unknown,
      })
      expect(server.stats().errors - before.errors).toBe(2)
      expect(calls).toBe(before.calls)
    } finally {
      await client.close()
    }
  })

  it("reports a plain request it cannot decode as request:error (PIRATE_DECODE); no reply", async () => {
    const client = new LazyPirateClient({
      connect: server.endpoint,
      codec: "raw",
      framed: false,
      timeout: 200,
      retries: 1,
    })
    try {
      const failed = once(server, "request:error", { signal: AbortSignal.timeout(2000) })
      const request = client.request(Buffer.from([0x93, 0x01])) // truncated msgpack array
      const [event] = (await failed) as [{ raw: boolean; error: unknown }]
      expect(event.raw).toBe(true)
      expect(event.error).toMatchObject({ code: "PIRATE_DECODE" })
      await expect(request).rejects.toMatchObject({ code: "PIRATE_TIMEOUT" })
    } finally {
      await client.close()
    }
  })
})
