import { once } from "node:events"
import { setTimeout as sleep } from "node:timers/promises"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer, Request } from "zeromq"
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
  RemoteError,
  RequestTimeoutError,
  type RequestHandler,
} from "../../patterns/index.js"
import { ReplyCache } from "../../patterns/lazy-pirate/server.js"
import { deadEndpoint, deferred, openClient, startServer } from "../helpers/lazy-helpers.js"
import { waitFor } from "../helpers/wait.js"

type RequestContext = Parameters<RequestHandler>[1]

const echo = (payload: unknown) => payload

/** A REQ socket of the test itself, to send hand-made frames. */
function testSocket(endpoint: string): Request {
  const sock = new Request({ linger: 0, receiveTimeout: 2_000 })
  sock.connect(endpoint)
  onTestFinished(() => sock.close())
  return sock
}

describe("options are validated in the constructor", () => {
  const ep = "tcp://127.0.0.1:5555"

  it("client: TypeError or RangeError naming the option", () => {
    // @ts-expect-error connect is required
    expect(() => new LazyPirateClient({})).toThrow(/'connect'/)
    expect(() => new LazyPirateClient({ connect: "127.0.0.1:5555" })).toThrow(TypeError)
    expect(() => new LazyPirateClient({ connect: [] })).toThrow(TypeError)
    expect(() => new LazyPirateClient({ connect: [ep, "tcp://host"] })).toThrow(/'connect'/)
    expect(() => new LazyPirateClient({ connect: "tcp://127.0.0.1:*" })).toThrow(/'connect'/)
    expect(() => new LazyPirateClient({ connect: ep, timeout: 0 })).toThrow(RangeError)
    expect(() => new LazyPirateClient({ connect: ep, timeout: 0 })).toThrow(/'timeout'/)
    // @ts-expect-error wrong type on purpose
    expect(() => new LazyPirateClient({ connect: ep, timeout: "100" })).toThrow(TypeError)
    expect(() => new LazyPirateClient({ connect: ep, timeout: 2 ** 31 })).toThrow(RangeError)
    expect(() => new LazyPirateClient({ connect: ep, retries: 0 })).toThrow(/'retries'/)
    expect(() => new LazyPirateClient({ connect: ep, retries: 1.5 })).toThrow(TypeError)
    // @ts-expect-error wrong codec on purpose
    expect(() => new LazyPirateClient({ connect: ep, codec: "json" })).toThrow(/'codec'/)
    // @ts-expect-error wrong type on purpose
    expect(() => new LazyPirateClient({ connect: ep, framed: "yes" })).toThrow(/'framed'/)
    expect(() => new LazyPirateClient({ connect: ep, concurrency: 0 })).toThrow(RangeError)
    expect(() => new LazyPirateClient({ connect: ep, maxMessageSize: -1 })).toThrow(RangeError)
    // @ts-expect-error options are required
    expect(() => new LazyPirateClient()).toThrow(TypeError)
  })

  it("client: request() options are checked synchronously; a payload the codec refuses rejects", async () => {
    const client = openClient({ connect: ep })
    expect(() => client.request("x", { timeout: -1 })).toThrow(RangeError)
    expect(() => client.request("x", { retries: 0 })).toThrow(/'retries'/)
    // @ts-expect-error wrong type on purpose
    expect(() => client.request("x", { signal: "stop" })).toThrow(/'signal'/)
    const raw = openClient({ connect: ep, codec: "raw" })
    await expect(raw.request(42)).rejects.toMatchObject({ code: "PIRATE_ENCODE" })
    expect(raw.status).toBe("new") // nothing was sent: still not opened
    expect(client.status).toBe("new")
  })

  it("server: TypeError or RangeError naming the option; no I/O before open()", () => {
    const bind = "tcp://127.0.0.1:*"
    // @ts-expect-error handler is required
    expect(() => new LazyPirateServer({ bind })).toThrow(/'handler'/)
    // @ts-expect-error bind is required
    expect(() => new LazyPirateServer({ handler: echo })).toThrow(/'bind'/)
    // @ts-expect-error one endpoint only
    expect(() => new LazyPirateServer({ bind: [bind, bind], handler: echo })).toThrow(/'bind'/)
    expect(() => new LazyPirateServer({ bind, handler: echo, concurrency: 0 })).toThrow(RangeError)
    expect(() => new LazyPirateServer({ bind, handler: echo, replyCache: { size: 0 } })).toThrow(
      /'replyCache.size'/,
    )
    expect(() => new LazyPirateServer({ bind, handler: echo, replyCache: { ttl: 1.5 } })).toThrow(
      TypeError,
    )
    // @ts-expect-error wrong type on purpose
    expect(() => new LazyPirateServer({ bind, handler: echo, replyCache: "on" })).toThrow(
      /'replyCache'/,
    )
    expect(() => new LazyPirateServer({ bind, handler: echo, maxMessageSize: 0 })).toThrow(
      /'maxMessageSize'/,
    )
    const server = new LazyPirateServer({ bind, handler: echo })
    expect(server.status).toBe("new")
    expect(() => server.endpoint).toThrow(expect.objectContaining({ code: "PIRATE_NOT_OPEN" }))
  })
})

describe("lifecycle", () => {
  it("server: open/close are idempotent, endpoint resolves the port, static open", async () => {
    const server = new LazyPirateServer({ bind: "tcp://127.0.0.1:*", handler: echo })
    onTestFinished(() => server.close())
    const opening = server.open()
    expect(server.open()).toBe(opening)
    await opening
    expect(server.status).toBe("open")
    expect(server.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/)
    expect(server.endpoint).not.toContain("*")
    const closing = server.close()
    expect(server.close()).toBe(closing)
    await closing
    expect(server.status).toBe("closed")
    await expect(server.open()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    expect(server.status).toBe("closed")

    const closedFirst = new LazyPirateServer({ bind: "tcp://127.0.0.1:*", handler: echo })
    await closedFirst.close()
    await expect(closedFirst.open()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
  })

  it("client: opens lazily, open/close idempotent, asyncDispose, PIRATE_CLOSED afterwards", async () => {
    const server = await startServer({ handler: echo })
    const client = new LazyPirateClient({ connect: server.endpoint })
    expect(client.status).toBe("new")
    await expect(client.request("hi")).resolves.toBe("hi")
    expect(client.status).toBe("open")
    expect(client.open()).toBe(client.open())
    await client[Symbol.asyncDispose]()
    expect(client.status).toBe("closed")
    expect(client.close()).toBe(client.close())
    await expect(client.request("again")).rejects.toMatchObject({ code: "PIRATE_CLOSED" })

    const opened = await LazyPirateClient.open({ connect: server.endpoint })
    expect(opened.status).toBe("open")
    await opened.close()
    await expect(opened.open()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    const never = new LazyPirateClient({ connect: server.endpoint })
    await never.close()
    await expect(never.open()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    await expect(never.request(1)).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
  })

  it("a client may start before its server exists", async () => {
    const endpoint = await deadEndpoint()
    const client = await LazyPirateClient.open({ connect: endpoint, timeout: 2_000 })
    onTestFinished(() => client.close())
    const reply = client.request("early")
    await startServer({ bind: endpoint, handler: echo })
    await expect(reply).resolves.toBe("early")
  })
})

describe("request and reply", () => {
  it("round-trips msgpack values and gives the handler the request id", async () => {
    const contexts: RequestContext[] = []
    const server = await startServer({
      handler: (payload, ctx) => {
        contexts.push(ctx)
        return { got: payload }
      },
    })
    const client = openClient({ connect: server.endpoint, timeout: 1_000 })
    const values = [
      "text",
      42,
      -1.5,
      null,
      true,
      [1, "two", { three: 3 }],
      { nested: { list: [1, 2], bin: Buffer.from([1, 2, 3]) } },
    ]
    for (const value of values) {
      await expect(client.request(value)).resolves.toEqual({ got: value })
    }
    expect(contexts).toHaveLength(values.length)
    for (const ctx of contexts) {
      expect(ctx.raw).toBe(false)
      expect(ctx.id).toMatch(/^[\w-]+\.\w+$/)
      expect(ctx.signal.aborted).toBe(false)
    }
    expect(new Set(contexts.map((c) => c.id)).size).toBe(values.length)
    expect(server.stats()).toMatchObject({
      requests: values.length,
      replies: values.length,
      errors: 0,
      dropped: 0,
    })
    expect(client.stats()).toMatchObject({ requests: values.length, replies: values.length })
  })

  it("a handler error is a RemoteError, not a timeout", async () => {
    const server = await startServer({
      handler: (payload) => {
        if (payload === "boom") throw new TypeError("no boom allowed")
        return payload
      },
    })
    const errors: unknown[] = []
    server.on("request:error", (e) => errors.push(e))
    const client = openClient({ connect: server.endpoint, timeout: 1_000 })
    const failure = client.request("boom")
    await expect(failure).rejects.toBeInstanceOf(RemoteError)
    await expect(failure).rejects.toMatchObject({
      code: "PIRATE_REMOTE",
      message: "no boom allowed",
      remoteName: "TypeError",
    })
    await expect(client.request("fine")).resolves.toBe("fine")
    expect(server.stats()).toMatchObject({ errors: 1, replies: 2 })
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ raw: false })
    expect((errors[0] as { error: unknown }).error).toBeInstanceOf(TypeError)
  })

  it("runs concurrent requests, each getting its own reply; the server bounds its handlers", async () => {
    let running = 0
    let most = 0
    const server = await startServer({
      concurrency: 3,
      handler: async (payload) => {
        most = Math.max(most, ++running)
        await sleep(10)
        running--
        return { n: payload }
      },
    })
    const client = openClient({ connect: server.endpoint, timeout: 2_000, concurrency: 12 })
    const replies = await Promise.all(Array.from({ length: 24 }, (_, n) => client.request(n)))
    expect(replies).toEqual(Array.from({ length: 24 }, (_, n) => ({ n })))
    expect(most).toBe(3)

    const narrow = openClient({ connect: server.endpoint, timeout: 2_000, concurrency: 2 })
    const pending = Array.from({ length: 10 }, (_, n) => narrow.request(n))
    expect(narrow.stats()).toMatchObject({ inFlight: 2, queued: 8 })
    await expect(Promise.all(pending)).resolves.toEqual(
      Array.from({ length: 10 }, (_, n) => ({ n })),
    )
    expect(narrow.stats()).toMatchObject({ inFlight: 0, queued: 0, replies: 10 })
  })

  it("codec raw on both sides: plain single-frame requests and Buffer replies", async () => {
    const server = await startServer({
      codec: "raw",
      handler: (payload, ctx) => {
        if (String(payload) === "fail") throw new Error("cannot be signalled")
        return Buffer.concat([Buffer.from(ctx.raw ? "raw:" : "framed:"), payload as Buffer])
      },
    })
    const errors: unknown[] = []
    server.on("request:error", (e) => errors.push(e))
    const client = openClient({ connect: server.endpoint, codec: "raw", timeout: 150, retries: 1 })
    const reply = await client.request("hello")
    expect(Buffer.isBuffer(reply)).toBe(true)
    expect(String(reply)).toBe("raw:hello")
    await expect(client.request(new Uint8Array([0x61, 0x62]))).resolves.toEqual(
      Buffer.from("raw:ab"),
    )
    // A plain request has no way to carry an error: no reply at all, the client times out.
    await expect(client.request("fail")).rejects.toMatchObject({ code: "PIRATE_TIMEOUT" })
    expect(server.stats()).toMatchObject({ errors: 1, replies: 2 })
    expect(errors).toEqual([expect.objectContaining({ raw: true, id: undefined })])

    const framedRaw = openClient({ connect: server.endpoint, codec: "raw", framed: true })
    await expect(framedRaw.request("x")).resolves.toEqual(Buffer.from("framed:x"))
  })
})

describe("failures", () => {
  it("nothing listening: RequestTimeoutError after `retries` tries of `timeout` each", async () => {
    const endpoint = await deadEndpoint()
    const client = openClient({ connect: endpoint, timeout: 100, retries: 3 })
    const retries: unknown[] = []
    client.on("request:retry", (e) => retries.push(e))
    const started = performance.now()
    const failure = client.request("anyone?")
    await expect(failure).rejects.toBeInstanceOf(RequestTimeoutError)
    const elapsed = performance.now() - started
    await expect(failure).rejects.toMatchObject({
      code: "PIRATE_TIMEOUT",
      tries: 3,
      timeout: 100,
      endpoints: [endpoint],
    })
    const err = (await failure.catch((e: unknown) => e)) as RequestTimeoutError
    expect(err.message).toContain(endpoint)
    expect(err.message).toContain("3 tries")
    expect(err.message).toContain("100 ms")
    expect(elapsed).toBeGreaterThanOrEqual(290) // timers may fire up to 1 ms early
    expect(retries).toHaveLength(2)
    expect(client.stats()).toMatchObject({ requests: 1, replies: 0, retries: 2, timeouts: 1 })

    // Per-request settings override the client's.
    const once = client.request("once", { timeout: 50, retries: 1 })
    await expect(once).rejects.toMatchObject({ code: "PIRATE_TIMEOUT", tries: 1, timeout: 50 })
  })

  it("fails over to the next endpoint when the first is dead, and stays there", async () => {
    const dead = await deadEndpoint()
    const server = await startServer({ handler: (p) => ({ from: "live", p }) })
    const client = openClient({ connect: [dead, server.endpoint], timeout: 150, retries: 2 })
    const failovers: unknown[] = []
    const retries: unknown[] = []
    client.on("endpoint:failover", (e) => failovers.push(e))
    client.on("request:retry", (e) => retries.push(e))
    await expect(client.request(1)).resolves.toEqual({ from: "live", p: 1 })
    expect(failovers).toEqual([{ from: dead, to: server.endpoint }])
    expect(retries).toEqual([
      expect.objectContaining({ attempt: 2, endpoint: server.endpoint, previousEndpoint: dead }),
    ])
    expect(client.endpoint).toBe(server.endpoint)
    await expect(client.request(2)).resolves.toEqual({ from: "live", p: 2 })
    expect(client.stats()).toMatchObject({ failovers: 1, retries: 1 })
  })

  it("gives up naming every endpoint it tried", async () => {
    const [a, b] = [await deadEndpoint(), await deadEndpoint()]
    const client = openClient({ connect: [a, b], timeout: 60, retries: 3 })
    const failure = client.request("x")
    await expect(failure).rejects.toMatchObject({ code: "PIRATE_TIMEOUT", endpoints: [a, b] })
    await expect(failure).rejects.toThrow(`${a}, ${b}`)
  })

  it("a server that stalls past the timeout never gives a stale reply", async () => {
    const seen = new Set<unknown>()
    const server = await startServer({
      concurrency: 8,
      handler: async (payload) => {
        if (!seen.has(payload)) {
          seen.add(payload) // the first try of each request answers too late
          await sleep(160)
        }
        return { answer: payload }
      },
    })
    const client = openClient({ connect: server.endpoint, timeout: 100, retries: 3 })
    let retries = 0
    client.on("request:retry", () => retries++)
    for (let n = 0; n < 5; n++) {
      await expect(client.request(n)).resolves.toEqual({ answer: n })
    }
    expect(retries).toBeGreaterThanOrEqual(5)
    // The late replies were sent to abandoned sockets; wait for them to be written, then check
    // that a new request still gets its own answer.
    await waitFor(() => expect(server.stats().replies).toBe(server.stats().requests))
    await expect(client.request("last")).resolves.toEqual({ answer: "last" })
  })

  it("close() rejects pending and queued requests with PIRATE_CLOSED", async () => {
    const release = deferred()
    const server = await startServer({ handler: () => release.promise })
    onTestFinished(() => release.resolve())
    const client = new LazyPirateClient({ connect: server.endpoint, concurrency: 1 })
    const first = client.request(1)
    const queued = client.request(2)
    await waitFor(() => expect(server.stats().running).toBe(1))
    await client.close()
    await expect(first).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    await expect(queued).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    await expect(client.request(3)).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    expect(client.stats()).toMatchObject({ inFlight: 0, queued: 0 })
  })

  it("abort rejects with PIRATE_ABORTED and the signal's reason as cause", async () => {
    const release = deferred()
    const server = await startServer({ handler: () => release.promise })
    onTestFinished(() => release.resolve())
    const client = openClient({ connect: server.endpoint, concurrency: 1, timeout: 5_000 })
    const reason = new Error("user gave up")

    const inFlight = new AbortController()
    const queuedCtl = new AbortController()
    const first = client.request(1, { signal: inFlight.signal })
    const queued = client.request(2, { signal: queuedCtl.signal })
    await waitFor(() => expect(server.stats().running).toBe(1))
    queuedCtl.abort(reason)
    await expect(queued).rejects.toMatchObject({ code: "PIRATE_ABORTED", cause: reason })
    inFlight.abort(reason)
    await expect(first).rejects.toMatchObject({ code: "PIRATE_ABORTED", cause: reason })

    const already = AbortSignal.abort(reason)
    await expect(client.request(3, { signal: already })).rejects.toMatchObject({
      code: "PIRATE_ABORTED",
      cause: reason,
    })
    expect(client.stats()).toMatchObject({ inFlight: 0, queued: 0 })
    release.resolve()
    await expect(client.request("after")).resolves.toBeUndefined()
  })

  it("a reply larger than maxMessageSize is refused; the client recovers", async () => {
    const server = await startServer({ maxMessageSize: 1024, handler: echo })
    const client = openClient({ connect: server.endpoint, timeout: 150, retries: 1 })
    await expect(client.request("x".repeat(2000))).rejects.toMatchObject({
      code: "PIRATE_TIMEOUT",
    })
    await expect(client.request("small")).resolves.toBe("small")
    expect(server.stats().requests).toBe(1)
  })

  it("malformed messages are counted and dropped, never a crash", async () => {
    const server = await startServer({ handler: echo })
    const dropped: string[] = []
    server.on("request:dropped", (e) => dropped.push(e.reason))
    const dealer = new Dealer({ linger: 0 })
    onTestFinished(() => dealer.close())
    dealer.connect(server.endpoint)
    await dealer.send([Buffer.from("no delimiter")])
    await dealer.send([Buffer.alloc(0), Buffer.from("a"), Buffer.from("b"), Buffer.from("c")])
    await dealer.send([Buffer.alloc(0), Buffer.from("not LPX"), Buffer.from("body")])
    await dealer.send([Buffer.alloc(0)])
    await waitFor(() => expect(server.stats().dropped).toBe(4))
    expect(dropped).toHaveLength(4)

    // A framed request whose body is not msgpack: an error reply (PIRATE_DECODE), not a crash.
    const req = testSocket(server.endpoint)
    await req.send([encodeRequestHeader("bad-body"), Buffer.from([0x92, 0x01])]) // truncated
    const [status, body] = await req.receive()
    expect(decodeReplyStatus(status)).toBe(LPX_ERROR)
    expect(decodeRemoteError(body).message).toMatch(/msgpack/)

    const client = openClient({ connect: server.endpoint, timeout: 1_000 })
    await expect(client.request("still alive")).resolves.toBe("still alive")
    expect(server.stats()).toMatchObject({ dropped: 4, errors: 1 })
  })
})

describe("reply cache", () => {
  /** A handler whose first run for each request id answers after `stall` ms. */
  function stallingHandler(stall: number) {
    const runs: string[] = []
    const handler = async (payload: unknown, ctx: RequestContext) => {
      runs.push(String(ctx.id))
      if (runs.filter((id) => id === ctx.id).length === 1) await sleep(stall)
      return { done: payload }
    }
    return { runs, handler }
  }

  it("on: a retry while the first try still runs joins it; the handler runs once", async () => {
    const { runs, handler } = stallingHandler(200)
    const server = await startServer({ replyCache: { size: 100, ttl: 10_000 }, handler })
    const client = openClient({ connect: server.endpoint, timeout: 150, retries: 4 })
    let retries = 0
    client.on("request:retry", () => retries++)
    await expect(client.request("pay once")).resolves.toEqual({ done: "pay once" })
    expect(retries).toBeGreaterThanOrEqual(1)
    expect(runs).toHaveLength(1)
    expect(server.stats()).toMatchObject({ requests: 1 + retries, cacheHits: retries })
  })

  it("off (the default): the same retried request runs the handler twice, with one id", async () => {
    const { runs, handler } = stallingHandler(150)
    const server = await startServer({ handler })
    const client = openClient({ connect: server.endpoint, timeout: 100, retries: 3 })
    await expect(client.request("pay twice")).resolves.toEqual({ done: "pay twice" })
    expect(runs.length).toBeGreaterThanOrEqual(2)
    expect(new Set(runs).size).toBe(1) // every try carried the same request id
    expect(server.stats()).toMatchObject({ requests: runs.length, cacheHits: 0 })
  })

  it("answers a repeated request id from the cache; evicts the oldest", async () => {
    let runs = 0
    const server = await startServer({
      replyCache: { size: 2, ttl: 60_000 },
      handler: (payload) => ({ run: ++runs, payload }),
    })
    const ask = async (id: string, payload: unknown) => {
      const sock = testSocket(server.endpoint)
      await sock.send([encodeRequestHeader(id), msgpackCodec.encode(payload)])
      const [status, body] = await sock.receive()
      expect(decodeReplyStatus(status)).toBe(LPX_OK)
      return msgpackCodec.decode(body!)
    }
    expect(await ask("a", "A")).toEqual({ run: 1, payload: "A" })
    expect(await ask("a", "A")).toEqual({ run: 1, payload: "A" }) // from the cache
    expect(server.stats().cacheHits).toBe(1)
    await ask("b", "B")
    await ask("c", "C") // the cache holds 2: "a" goes
    expect(await ask("a", "A")).toEqual({ run: 4, payload: "A" })
    expect(server.stats().cacheHits).toBe(1)
  })

  it("forgets a reply after its ttl (the cache on a clock of the test's own)", () => {
    let now = 1_000
    const cache = new ReplyCache(10, 30, () => now)
    const reply = [Buffer.from("r")]
    cache.set("a", reply)
    now += 29
    expect(cache.get("a")).toBe(reply)
    cache.set("b", reply) // expires at 1_059
    now += 1 // "a" expires at 1_030: gone, "b" is still there
    expect(cache.get("a")).toBeUndefined()
    expect(cache.get("b")).toBe(reply)
    now += 29
    expect(cache.get("b")).toBeUndefined()
  })

  it("caches error replies too: a retry gets the same error", async () => {
    let runs = 0
    const server = await startServer({
      replyCache: true,
      handler: () => {
        throw new Error(`failed on run ${++runs}`)
      },
    })
    for (let i = 0; i < 2; i++) {
      const sock = testSocket(server.endpoint)
      await sock.send([encodeRequestHeader("same"), msgpackCodec.encode(null)])
      const [status, body] = await sock.receive()
      expect(decodeReplyStatus(status)).toBe(LPX_ERROR)
      expect(decodeRemoteError(body).message).toBe("failed on run 1")
    }
    expect(runs).toBe(1)
  })
})

describe("server close", () => {
  it("lets running handlers finish and answer, aborting ctx.signal", async () => {
    const started = deferred()
    let signal: AbortSignal | undefined
    const server = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      handler: async (payload, ctx) => {
        signal = ctx.signal
        started.resolve()
        await once(ctx.signal, "abort")
        return { finished: payload }
      },
    })
    const client = openClient({ connect: server.endpoint, timeout: 2_000, retries: 1 })
    const reply = client.request("work")
    await started.promise
    await server.close()
    expect(signal?.aborted).toBe(true)
    await expect(reply).resolves.toEqual({ finished: "work" })
    expect(server.status).toBe("closed")
  })

  it("gives up on a stuck handler after closeTimeout", async () => {
    const started = deferred()
    const server = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      closeTimeout: 50,
      handler: () => {
        started.resolve()
        return new Promise(() => undefined)
      },
    })
    const client = openClient({ connect: server.endpoint, timeout: 5_000, retries: 1 })
    const reply = client.request("never answered")
    await started.promise
    const t0 = performance.now()
    await server.close()
    expect(performance.now() - t0).toBeLessThan(1_000)
    expect(server.status).toBe("closed")
    await client.close()
    await expect(reply).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
  })
})
