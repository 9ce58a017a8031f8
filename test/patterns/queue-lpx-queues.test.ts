/**
 * Named queues through a ParanoidPirateQueue: a Lazy Pirate request names its queue and headers
 * in the LPX/1 meta frame (`[header, body, meta]`), the queue hands it to a worker of that queue,
 * and a restarted queue keeps the request's queue. A bad meta frame gets an LPX/1 error reply.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { Request } from "zeromq"
import { msgpackCodec, packMeta } from "../../lib/codec.js"
import {
  LPX_ERROR,
  LPX_OK,
  decodeRemoteError,
  decodeReplyStatus,
  encodeRequestHeader,
  encodeRequestMeta,
} from "../../lib/protocol.js"
import {
  LazyPirateClient,
  LazyPirateServer,
  ParanoidPirateQueue,
  Worker,
  type JobContext,
  type NamedQueueStats,
  type WorkerOptions,
} from "../../patterns/index.js"
import { forkFixture, type Child } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

async function openQueue(): Promise<ParanoidPirateQueue> {
  const queue = await ParanoidPirateQueue.open({
    frontend: "tcp://127.0.0.1:*",
    backend: "tcp://127.0.0.1:*",
    heartbeatInterval: 100,
  })
  onTestFinished(() => queue.close())
  return queue
}

async function openWorker(
  backend: string,
  options: Partial<WorkerOptions> & Pick<WorkerOptions, "handler">,
): Promise<Worker> {
  const worker = await Worker.open({
    connect: backend,
    heartbeatInterval: 100,
    reconnect: { initial: 50, max: 200 },
    closeTimeout: 1000,
    ...options,
  })
  onTestFinished(() => worker.close())
  return worker
}

function openClient(connect: string): LazyPirateClient {
  const client = new LazyPirateClient({ connect, timeout: 5000, retries: 1 })
  onTestFinished(() => client.close())
  return client
}

/** A worker's answer: who ran it and what it was told. */
const answer = (by: string) => (payload: unknown, ctx: JobContext) => ({
  by,
  payload,
  queue: ctx.queue,
  headers: ctx.headers,
})

/** Sends raw frames from a REQ socket and reads the reply. */
async function rawRequest(endpoint: string, frames: Buffer[]): Promise<Buffer[]> {
  const sock = new Request({ linger: 0, receiveTimeout: 5000 })
  onTestFinished(() => sock.close())
  sock.connect(endpoint)
  await sock.send(frames)
  return sock.receive()
}

describe("ParanoidPirateQueue with named queues", { timeout: 15_000 }, () => {
  it("hands a request to a worker of its queue with its headers; one without a queue to default", async () => {
    const queue = await openQueue()
    const readyB = waitFor(() => expect(queue.stats().queues["b"]?.workers).toBe(1))
    await openWorker(queue.backendEndpoint, { queues: ["b"], handler: answer("b") })
    await openWorker(queue.backendEndpoint, { handler: answer("default") })
    await readyB
    await waitFor(() => expect(queue.stats().queues["default"]?.workers).toBe(1))
    const client = openClient(queue.frontendEndpoint)

    const headers = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }
    const [toB, toDefault, toB2] = await Promise.all([
      client.request({ n: 1 }, { queue: "b", headers }),
      client.request({ n: 2 }),
      client.request({ n: 3 }, { queue: "b" }),
    ])
    expect(toB).toEqual({ by: "b", payload: { n: 1 }, queue: "b", headers })
    expect(toDefault).toEqual({ by: "default", payload: { n: 2 }, queue: "default", headers: {} })
    expect(toB2).toEqual({ by: "b", payload: { n: 3 }, queue: "b", headers: {} })
    expect(queue.stats().queues["b"]).toMatchObject({ sent: 2, acked: 2 })
    expect(queue.stats().queues["default"]).toMatchObject({ sent: 1, acked: 1 })
  })

  it("keeps a request for a queue no worker takes waiting, and a plain REQ request goes to default", async () => {
    const queue = await openQueue()
    await openWorker(queue.backendEndpoint, { handler: answer("default") })
    const client = openClient(queue.frontendEndpoint)
    const waiting = client.request("for c", { queue: "c", timeout: 10_000 })
    waiting.catch(() => undefined) // awaited below
    await waitFor(() => expect(queue.stats().queues["c"]?.ready).toBe(1))

    // A plain single-frame REQ request has no meta: the default queue.
    const plain = await rawRequest(queue.frontendEndpoint, [msgpackCodec.encode("plain")])
    expect(msgpackCodec.decode(plain[0] as Buffer)).toMatchObject({ by: "default" })
    expect(queue.stats().queues["c"]?.ready).toBe(1)

    await openWorker(queue.backendEndpoint, { queues: ["c"], handler: answer("c") })
    expect(await waiting).toMatchObject({ by: "c", payload: "for c" })
  })

  it("answers a request with a bad meta frame with an LPX/1 error, and goes on serving", async () => {
    const queue = await openQueue()
    await openWorker(queue.backendEndpoint, { handler: answer("default") })
    const body = msgpackCodec.encode("x")
    const cases: [Buffer, RegExp][] = [
      [Buffer.from([0x81, 0xa1]), /meta frame is not msgpack/],
      [Buffer.from([0xc1]), /must be a msgpack map/],
      [packMeta([1, 2]), /must be a msgpack map/],
      [packMeta({ queue: "" }), /meta frame is invalid: 'queue' must be a non-empty string/],
      [packMeta({ queue: "a".repeat(256) }), /'queue' must be at most 255/],
      [packMeta({ headers: { a: 1 } }), /'headers\.a' must be a string/],
    ]
    for (const [i, [meta, message]] of cases.entries()) {
      const reply = await rawRequest(queue.frontendEndpoint, [
        encodeRequestHeader(`bad.${i}`),
        body,
        meta,
      ])
      expect(reply).toHaveLength(2)
      expect(decodeReplyStatus(reply[0])).toBe(LPX_ERROR)
      const err = decodeRemoteError(reply[1])
      expect(err.code).toBe("PIRATE_PROTOCOL")
      expect(err.message).toMatch(message)
    }
    expect(queue.stats()).toMatchObject({ malformed: cases.length, sent: 0 })
    // Still serving, and a good meta frame is taken.
    const good = await rawRequest(queue.frontendEndpoint, [
      encodeRequestHeader("good.1"),
      body,
      encodeRequestMeta({ headers: { a: "1" } }),
    ])
    expect(decodeReplyStatus(good[0])).toBe(LPX_OK)
    expect(msgpackCodec.decode(good[1] as Buffer)).toMatchObject({ headers: { a: "1" } })
  })
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-queue-lpx-queues-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

interface Endpoints {
  frontend: string
  backend: string
}

async function startQueue(journal: string, at?: Endpoints): Promise<{ q: Child } & Endpoints> {
  const q = forkFixture("pp-queue.ts", [
    at?.frontend ?? "tcp://127.0.0.1:*",
    at?.backend ?? "tcp://127.0.0.1:*",
    journal,
  ])
  const open = (await q.waitFor((m) => m["type"] === "open")) as unknown as Endpoints
  return { q, frontend: open.frontend, backend: open.backend }
}

async function queuesOf(q: Child): Promise<Record<string, NamedQueueStats>> {
  const from = q.messages.length
  q.process.send({ type: "stats" })
  const m = await q.waitFor((m) => m["type"] === "stats" && q.messages.indexOf(m) >= from)
  return (m["stats"] as { queues: Record<string, NamedQueueStats> }).queues
}

describe("ParanoidPirateQueue restarted on its journal", { timeout: 30_000 }, () => {
  it("keeps a recovered request's queue and headers after a SIGKILL", async () => {
    const journal = await tempDir()
    const first = await startQueue(journal)
    const client = new LazyPirateClient({ connect: first.frontend, timeout: 200, retries: 150 })
    onTestFinished(() => client.close())
    const reply = client.request({ n: 7 }, { queue: "b", headers: { h: "kept" } })
    reply.catch(() => undefined) // awaited below
    await first.q.waitFor((m) => m["type"] === "journaled")
    await first.q.kill("SIGKILL")

    const second = await startQueue(journal, first)
    // A worker of the default queue only: the recovered request is not its.
    let defaultRuns = 0
    await openWorker(second.backend, {
      handler: () => {
        defaultRuns++
        return "wrong"
      },
    })
    await waitFor(
      async () => {
        const queues = await queuesOf(second.q)
        expect(queues["b"]?.ready).toBe(1)
        expect(queues["default"]?.workers).toBe(1)
      },
      { timeout: 10_000 },
    )
    await openWorker(second.backend, { queues: ["b"], handler: answer("b") })
    expect(await reply).toEqual({ by: "b", payload: { n: 7 }, queue: "b", headers: { h: "kept" } })
    expect(defaultRuns).toBe(0)
  })
})

describe("LazyPirateServer and the meta frame", { timeout: 15_000 }, () => {
  it("answers a request with queue and headers, and shows them to the handler", async () => {
    const server = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      handler: (p, ctx) => ({ p, queue: ctx.queue ?? null, headers: ctx.headers ?? null }),
    })
    onTestFinished(() => server.close())
    const client = openClient(server.endpoint)
    expect(await client.request(1, { queue: "q", headers: { a: "b" } })).toEqual({
      p: 1,
      queue: "q",
      headers: { a: "b" },
    })
    expect(await client.request(2)).toEqual({ p: 2, queue: null, headers: null })
    const bad = await rawRequest(server.endpoint, [
      encodeRequestHeader("bad"),
      msgpackCodec.encode(3),
      packMeta({ headers: "no" }),
    ])
    expect(decodeReplyStatus(bad[0])).toBe(LPX_ERROR)
    expect(decodeRemoteError(bad[1])).toMatchObject({
      code: "PIRATE_PROTOCOL",
      message: expect.stringMatching(/'headers' must be an object/) as string,
    })
    expect(server.stats()).toMatchObject({ requests: 3, errors: 1 })
  })

  it("refuses queue and headers that cannot be sent, synchronously", () => {
    const client = openClient("tcp://127.0.0.1:5")
    expect(() => client.request(1, { queue: "" })).toThrow(TypeError)
    expect(() =>
      client.request(1, { headers: { a: 1 } as unknown as Record<string, string> }),
    ).toThrow(/'headers\.a' must be a string/)
    const raw = new LazyPirateClient({ connect: "tcp://127.0.0.1:5", codec: "raw" })
    onTestFinished(() => raw.close())
    expect(() => raw.request(Buffer.from("x"), { queue: "q" })).toThrow(
      /'queue' needs LPX\/1 framed/,
    )
  })
})
