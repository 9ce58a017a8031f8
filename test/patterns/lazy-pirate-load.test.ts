/**
 * LazyPirateServer under load: it keeps reading while every handler slot is taken, so retries
 * are joined to their running request or answered from the cache, new work waits its turn up to
 * `maxQueued`, and beyond that a client is told `PIRATE_BUSY` at once.
 */
import { describe, expect, it, onTestFinished } from "vitest"
import { Request } from "zeromq"
import { msgpackCodec } from "../../lib/codec.js"
import {
  LPX_ERROR,
  LPX_OK,
  decodeRemoteError,
  decodeReplyStatus,
  encodeRequestHeader,
} from "../../lib/protocol.js"
import {
  LazyPirateClient,
  LazyPirateServer,
  PirateError,
  RemoteError,
  type LazyPirateServerOptions,
} from "../../patterns/index.js"
import { waitFor } from "../helpers/wait.js"

async function openServer(options: Omit<LazyPirateServerOptions, "bind">) {
  const server = await LazyPirateServer.open({ bind: "tcp://127.0.0.1:*", ...options })
  onTestFinished(() => server.close())
  return server
}

function rawSocket(endpoint: string): Request {
  const sock = new Request({ linger: 0, receiveTimeout: 5000 })
  onTestFinished(() => sock.close())
  sock.connect(endpoint)
  return sock
}

describe("LazyPirateServer under load", () => {
  it("answers 128 requests in flight against concurrency 16 whose first runs outlast the client's timeout", async () => {
    const total = 128
    let running = 0
    let most = 0
    const runs = new Map<string, number>()
    const server = await openServer({
      concurrency: 16,
      replyCache: true,
      handler: async (payload, ctx) => {
        const id = ctx.id as string
        runs.set(id, (runs.get(id) ?? 0) + 1)
        running++
        most = Math.max(most, running)
        try {
          // Every first run is slow: it lasts until every client has timed out and retried,
          // that is until the server has read each request and a retry of each.
          await waitFor(
            () =>
              expect(server.stats().requests, "a retry of each request").toBeGreaterThanOrEqual(
                2 * total,
              ),
            { timeout: 8000 },
          )
          return payload
        } finally {
          running--
        }
      },
    })
    const client = new LazyPirateClient({
      connect: server.endpoint,
      timeout: 500,
      retries: 4,
      concurrency: total,
    })
    onTestFinished(() => client.close())
    const replies = await Promise.all(
      Array.from({ length: total }, (_, n) => client.request({ n })),
    )
    expect(replies).toEqual(Array.from({ length: total }, (_, n) => ({ n })))
    expect(runs.size).toBe(total)
    expect([...runs.values()].every((n) => n === 1)).toBe(true)
    expect(most).toBe(16)
    expect(server.stats()).toMatchObject({ running: 0, queued: 0, refused: 0 })
  })

  it("queues new work up to maxQueued, refuses more with PIRATE_BUSY and still joins retries", async () => {
    let release = (): void => undefined
    const released = new Promise<void>((resolve) => (release = resolve))
    const runs: unknown[] = []
    const server = await openServer({
      concurrency: 1,
      maxQueued: 2,
      replyCache: true,
      handler: async (payload) => {
        runs.push(payload)
        await released
        return payload
      },
    })
    const client = new LazyPirateClient({ connect: server.endpoint, timeout: 5000, retries: 1 })
    onTestFinished(() => client.close())
    const first = client.request("first") // runs
    first.catch(() => undefined) // awaited below
    await waitFor(() => expect(server.stats().running).toBe(1))
    const header = encodeRequestHeader("queued.1")
    const body = msgpackCodec.encode("queued")
    const firstTry = rawSocket(server.endpoint)
    await firstTry.send([header, body]) // waits
    await waitFor(() => expect(server.stats().queued).toBe(1)) // in the queue before "third"
    const third = client.request("third") // waits
    third.catch(() => undefined) // awaited below
    await waitFor(() => expect(server.stats().queued).toBe(2))

    await expect(client.request("fourth")).rejects.toSatisfy(
      (err) =>
        err instanceof PirateError &&
        !(err instanceof RemoteError) &&
        err.code === "PIRATE_BUSY" &&
        /busy/.test(err.message),
    )
    // A plain request has no error channel: refused, it gets no reply.
    const plain = rawSocket(server.endpoint)
    await plain.send(msgpackCodec.encode("plain"))
    await waitFor(() => expect(server.stats().refused).toBe(2))
    // A retry of a waiting request joins it, full queue or not.
    const retry = rawSocket(server.endpoint)
    await retry.send([header, body])
    await waitFor(() => expect(server.stats().cacheHits).toBe(1))
    expect(server.stats()).toMatchObject({ refused: 2, queued: 2, running: 1 })

    release()
    expect(await first).toBe("first")
    expect(await third).toBe("third")
    for (const sock of [firstTry, retry]) {
      const [status, answer] = await sock.receive()
      expect(decodeReplyStatus(status)).toBe(LPX_OK)
      expect(msgpackCodec.decode(answer as Buffer)).toBe("queued")
    }
    expect(runs).toEqual(["first", "queued", "third"])
  })

  it("sends the refusal as an LPX/1 error reply with code PIRATE_BUSY", async () => {
    let release = (): void => undefined
    const released = new Promise<void>((resolve) => (release = resolve))
    const server = await openServer({ concurrency: 1, maxQueued: 0, handler: () => released })
    onTestFinished(() => release())
    const busy = rawSocket(server.endpoint)
    const running = rawSocket(server.endpoint)
    await running.send([encodeRequestHeader("a"), msgpackCodec.encode(1)])
    await waitFor(() => expect(server.stats().running).toBe(1))
    await busy.send([encodeRequestHeader("b"), msgpackCodec.encode(2)])
    const [status, error] = await busy.receive()
    expect(decodeReplyStatus(status)).toBe(LPX_ERROR)
    expect(decodeRemoteError(error)).toMatchObject({ code: "PIRATE_BUSY", name: "PirateError" })
  })
})
