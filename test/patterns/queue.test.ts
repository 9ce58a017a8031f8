/**
 * ParanoidPirateQueue end to end: Lazy Pirate clients (LPX/1 framed, or plain REQ) on the
 * frontend, our Workers (in process, or in a child process for crash tests) on the backend.
 */
import { once } from "node:events"
import { Packr } from "msgpackr"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer, Request } from "zeromq"
import {
  LazyPirateClient,
  ParanoidPirateQueue,
  RemoteError,
  Worker,
  type ParanoidPirateQueueOptions,
  type WorkerOptions,
} from "../../patterns/index.js"
import { forkFixture } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

const FAST = { heartbeatInterval: 100, liveness: 3 } as const

async function openQueue(options: Partial<ParanoidPirateQueueOptions> = {}) {
  const queue = await ParanoidPirateQueue.open({
    frontend: "tcp://127.0.0.1:*",
    backend: "tcp://127.0.0.1:*",
    ...FAST,
    ...options,
  })
  const errors: Error[] = []
  queue.on("error", (err) => errors.push(err))
  onTestFinished(() => queue.close())
  return { queue, errors }
}

/** Opens a Worker on the queue's backend and waits until the queue has registered it. */
async function openWorker(
  queue: ParanoidPirateQueue,
  options: Partial<WorkerOptions> & Pick<WorkerOptions, "handler">,
): Promise<Worker> {
  const worker = new Worker({
    connect: queue.backendEndpoint,
    ...FAST,
    reconnect: { initial: 100, max: 1000 },
    ...options,
  })
  onTestFinished(() => worker.close())
  const registered = once(queue, "worker:ready", { signal: AbortSignal.timeout(5000) })
  await worker.open()
  await registered
  return worker
}

function openClient(queue: ParanoidPirateQueue, timeout = 3000, retries = 3): LazyPirateClient {
  const client = new LazyPirateClient({ connect: queue.frontendEndpoint, timeout, retries })
  onTestFinished(() => client.close())
  return client
}

describe("ParanoidPirateQueue", () => {
  it("carries framed msgpack requests from a LazyPirateClient to our workers and back", async () => {
    const { queue, errors } = await openQueue()
    const served = { a: 0, b: 0 }
    for (const name of ["a", "b"] as const) {
      await openWorker(queue, {
        handler: (payload) => {
          served[name]++
          const { n } = payload as { n: number }
          return { n, square: n * n, by: name }
        },
      })
    }
    const client = openClient(queue)
    const replies = await Promise.all(Array.from({ length: 30 }, (_, n) => client.request({ n })))
    expect(replies).toEqual(
      Array.from({ length: 30 }, (_, n) => ({
        n,
        square: n * n,
        by: expect.any(String) as string,
      })),
    )
    expect(served.a + served.b).toBe(30)
    expect(served.a).toBeGreaterThan(0)
    expect(served.b).toBeGreaterThan(0)
    expect(queue.stats()).toMatchObject({ requests: 30, replies: 30, acked: 30, dropped: 0 })
    expect(errors).toEqual([])
  })

  it("answers with a RemoteError once a failing handler has used up maxAttempts", async () => {
    const { queue } = await openQueue({
      maxAttempts: 3,
      retryBackoff: { initial: 10, max: 20, factor: 2, jitter: 0 },
    })
    const attempts: number[] = []
    await openWorker(queue, {
      handler: (_payload, ctx) => {
        attempts.push(ctx.attempt)
        throw new Error("boom")
      },
    })
    const client = openClient(queue)
    const failure = client.request({ op: "explode" })
    await expect(failure).rejects.toBeInstanceOf(RemoteError)
    await expect(failure).rejects.toMatchObject({
      code: "PIRATE_REMOTE",
      remoteName: "DeadLetterError",
      message: expect.stringMatching(/after 3 attempts: boom/) as string,
    })
    expect(attempts).toEqual([1, 2, 3])
    expect(queue.stats()).toMatchObject({ nacked: 3, dead: 1, acked: 0, replies: 1 })
  })

  it("gives the request of a worker killed while holding it to another worker", async () => {
    const { queue } = await openQueue()
    const lost = once(queue, "worker:lost", { signal: AbortSignal.timeout(5000) })
    const holder = forkFixture("pp-worker.ts", [
      queue.backendEndpoint,
      JSON.stringify({ hold: true }),
    ])
    await holder.waitFor((m) => m["type"] === "ready")

    const client = openClient(queue, 5000, 1)
    const reply = client.request({ job: 1 })
    reply.catch(() => undefined) // awaited below
    const job = await holder.waitFor((m) => m["type"] === "job")
    expect(job).toMatchObject({ attempt: 1, payload: { job: 1 } })

    // The second worker comes once the first holds the request: only a redelivery reaches it.
    const attempts: number[] = []
    await openWorker(queue, {
      handler: (payload, ctx) => {
        attempts.push(ctx.attempt)
        return { by: "survivor", payload }
      },
    })
    await holder.kill("SIGKILL")

    expect(await reply).toEqual({ by: "survivor", payload: { job: 1 } })
    expect(attempts).toEqual([2])
    const [event] = (await lost) as [{ requeued: number }]
    expect(event.requeued).toBe(1)
    expect(queue.stats()).toMatchObject({ acked: 1, redelivered: 1, replies: 1 })
  })

  it("joins a Lazy Pirate retry to the request still in flight and answers the newest socket", async () => {
    const { queue } = await openQueue()
    let runs = 0
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    await openWorker(queue, {
      handler: async (payload) => {
        runs++
        await released
        return { done: payload }
      },
    })
    const client = openClient(queue, 150, 20)
    const retried = once(client, "request:retry", { signal: AbortSignal.timeout(3000) })
    const reply = client.request("slow")
    reply.catch(() => undefined) // awaited below
    await retried
    await waitFor(() => expect(queue.stats().joined).toBeGreaterThan(0))
    release()
    expect(await reply).toEqual({ done: "slow" })
    expect(runs).toBe(1)
    expect(queue.stats()).toMatchObject({ replies: 1, acked: 1 })
  })

  it("answers a plain REQ socket's single-frame request with a single frame", async () => {
    const { queue } = await openQueue()
    await openWorker(queue, {
      codec: "raw",
      handler: (payload) => Buffer.concat([Buffer.from("echo:"), payload as Buffer]),
    })
    const req = new Request({ linger: 0, receiveTimeout: 3000 })
    onTestFinished(() => req.close())
    req.connect(queue.frontendEndpoint)
    await req.send("hello")
    const reply = await req.receive()
    expect(reply.map(String)).toEqual(["echo:hello"])

    // A msgpack payload from a plain client reaches a msgpack worker just as well.
    const packr = new Packr({ useRecords: false })
    const { queue: q2 } = await openQueue()
    await openWorker(q2, { handler: (payload) => ({ got: payload }) })
    const req2 = new Request({ linger: 0, receiveTimeout: 3000 })
    onTestFinished(() => req2.close())
    req2.connect(q2.frontendEndpoint)
    await req2.send(packr.pack({ x: 1 }))
    const [frame, ...rest] = await req2.receive()
    expect(rest).toEqual([])
    expect(packr.unpack(frame as Buffer)).toEqual({ got: { x: 1 } })
  })

  it("drops malformed frames on both sides without crashing, then carries on", async () => {
    const { queue, errors } = await openQueue()
    const worker = await openWorker(queue, {
      codec: "raw",
      handler: (payload) => Buffer.concat([Buffer.from("ok:"), payload as Buffer]),
    })

    // Frontend: what reaches the ROUTER after the client's routing id.
    const client = new Dealer({ linger: 0, receiveTimeout: 3000 })
    onTestFinished(() => client.close())
    client.connect(queue.frontendEndpoint)
    for (const frames of [
      ["no delimiter"], // [body] without the empty frame a REQ socket puts first
      [""], // a delimiter and nothing else
      ["", "a", "b", "c"], // too many frames
      ["x", "", "body"], // something before the delimiter
      ["", "NOT-LPX", "body"], // two frames after the delimiter, but not an LPX/1 header
      ["", "LPX"], // a header cut short, as a single-frame body it is a valid plain request…
    ]) {
      await client.send(frames)
    }
    // …so exactly one request went through: the last one, answered as a plain one.
    await client.send(["", "last"])
    const replies = [await client.receive(), await client.receive()]
    expect(replies.map((r) => r.map(String))).toEqual([
      ["", "ok:LPX"],
      ["", "ok:last"],
    ])

    // Backend: a rogue "worker" sending damaged commands and replies.
    const rogue = new Dealer({ linger: 0 })
    onTestFinished(() => rogue.close())
    rogue.connect(queue.backendEndpoint)
    const droppedBefore = queue.stats().dropped
    for (const frames of [
      [Buffer.from([0x01, 0x50, 0x50, 0x58, 0x01, 0xc1])], // READY claiming PPX, metadata garbage
      [Buffer.from([0x01, 0x00, 0x00])], // READY with unknown trailing bytes
      [Buffer.from([0x7f])], // unknown command
      [Buffer.from([0x02, 0x02])], // single frame, unknown two-byte command
      [Buffer.from([0x13]), Buffer.from("env"), Buffer.from([0xc1])], // NACK with bad metadata
      [Buffer.from("not-our-envelope"), Buffer.alloc(0), Buffer.from("reply")], // foreign envelope
      [Buffer.from("a"), Buffer.from("b"), Buffer.from("c"), Buffer.from("d"), Buffer.from("e")],
    ]) {
      await rogue.send(frames)
    }
    await waitFor(() => expect(queue.stats().dropped).toBe(droppedBefore + 7))
    expect(queue.stats().workers).toBe(1) // the rogue never became a worker

    const lpc = new LazyPirateClient({
      connect: queue.frontendEndpoint,
      codec: "raw",
      framed: true,
      timeout: 3000,
    })
    onTestFinished(() => lpc.close())
    expect(await lpc.request("still up")).toEqual(Buffer.from("ok:still up"))
    expect(queue.stats()).toMatchObject({ requests: 3, replies: 3, workers: 1, staleAcks: 0 })
    expect(worker.stats().dropped).toBe(0)
    expect(errors).toEqual([])
  })
})
