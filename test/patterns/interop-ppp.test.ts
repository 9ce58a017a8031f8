/**
 * Interop with plain Paranoid Pirate Protocol (rfc 6/PPP) peers written in Python
 * (test/fixtures/ppp_*.py, python3-zmq): they know PPP and nothing of PPX/1, LPX/1 or msgpack,
 * so every payload here is a Buffer (`codec: "raw"`).
 */
import { once } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import {
  LazyPirateClient,
  ParanoidPirateQueue,
  Sender,
  Worker,
  type SenderOptions,
  type WorkerOptions,
} from "../../patterns/index.js"
import { pythonMissing, requirePrereq } from "../helpers/prereq.js"
import { spawnPython, startPythonQueue, type Spawned } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

/** Heartbeats of every peer in this file: 100 ms, 3 missed = dead. */
const python = requirePrereq("PPP interop with Python", pythonMissing("zmq"))
const HEARTBEAT = ["--interval", "100", "--liveness", "3"]
const FAST = { heartbeatInterval: 100, liveness: 3 } as const

async function openSender(options: Partial<SenderOptions> = {}): Promise<Sender> {
  const sender = await Sender.open({ bind: "tcp://127.0.0.1:*", codec: "raw", ...FAST, ...options })
  onTestFinished(() => sender.close())
  return sender
}

/** A Worker with the raw codec whose reply is "ts:" + the request. */
function newWorker(options: Partial<WorkerOptions> & { connect: string }): Worker {
  const worker = new Worker({
    codec: "raw",
    ...FAST,
    reconnect: { initial: 100, max: 1000 },
    handler: (payload) => Buffer.concat([Buffer.from("ts:"), payload as Buffer]),
    ...options,
  })
  onTestFinished(() => worker.close())
  return worker
}

/** Every payload of `event` emitted from now on. */
function collect<T>(emitter: NodeJS.EventEmitter, event: string): T[] {
  const seen: T[] = []
  emitter.on(event, (payload: T) => seen.push(payload))
  return seen
}

function pythonWorker(endpoint: string, ...args: string[]): Spawned {
  return spawnPython("ppp_worker.py", [
    endpoint,
    ...HEARTBEAT,
    "--reconnect-initial",
    "100",
    ...args,
  ])
}

const ofType = (events: Record<string, unknown>[], type: string) =>
  events.filter((e) => e["event"] === type)

describe.runIf(python)("our Sender with plain Python PPP workers", () => {
  it("keeps per-key order and delays with them: the sender does the scheduling", async () => {
    const sender = await openSender()
    const a = pythonWorker(sender.endpoint, "--delay", "20")
    const b = pythonWorker(sender.endpoint, "--delay", "20")
    await waitFor(() => expect(sender.stats().workers).toBe(2))
    const due = Date.now() + 300
    await sender.send(Buffer.from("late"), { notBefore: due })
    for (let n = 0; n < 6; n++)
      for (const k of ["x", "y"]) await sender.send(Buffer.from(`${k}${n}`), { key: k })
    await sender.drained({ signal: AbortSignal.timeout(10_000) })
    type Event = { event: string; body?: string; t: number }
    const events = ([...a.events, ...b.events] as Event[]).sort((p, q) => p.t - q.t)
    // Across both workers, each message of a key starts after the one before it was answered.
    for (const k of ["x", "y"]) {
      const ofKey = events.filter((e) => e.body?.startsWith(k) === true)
      const expected = Array.from({ length: 6 }, (_, n) => [`request ${k}${n}`, `reply ${k}${n}`])
      expect(ofKey.map((e) => `${e.event} ${e.body}`)).toEqual(expected.flat())
    }
    const late = events.find((e) => e.event === "request" && e.body === "late")
    expect(late?.t).toBeGreaterThanOrEqual(due)
    expect(ofType([...a.events, ...b.events], "request").length).toBe(13)
  })

  it("dispatches to them, takes their replies as acks and returns their reply to request()", async () => {
    const sender = await openSender()
    const ready = collect<{ protocol: string }>(sender, "worker:ready")
    const a = pythonWorker(sender.endpoint, "--prefix", "a:")
    const b = pythonWorker(sender.endpoint, "--prefix", "b:")
    await waitFor(() => expect(ready).toHaveLength(2))
    expect(ready.map((r) => r.protocol)).toEqual(["ppp", "ppp"])

    const bodies = Array.from({ length: 40 }, (_, i) => `m${i}`)
    for (const body of bodies) await sender.send(Buffer.from(body))
    await sender.drained({ signal: AbortSignal.timeout(8000) })
    expect(sender.stats()).toMatchObject({
      sent: 40,
      acked: 40,
      redelivered: 0,
      staleAcks: 0,
      dropped: 0,
    })

    const reply = await sender.request(Buffer.from("ping"))
    expect(Buffer.isBuffer(reply)).toBe(true)
    expect(String(reply)).toMatch(/^[ab]:ping$/)

    await waitFor(() =>
      expect(ofType([...a.events, ...b.events], "reply")).toHaveLength(bodies.length + 1),
    )
    const taken = ofType([...a.events, ...b.events], "request")
    expect(taken.map((e) => e["body"]).sort()).toEqual([...bodies, "ping"].sort())
    // Both got work (credit 1 each: the second message cannot wait for the first worker).
    expect(ofType(a.events, "request").length).toBeGreaterThan(0)
    expect(ofType(b.events, "request").length).toBeGreaterThan(0)
    // The envelope they echoed is ours: 0x50 0x01, attempt 1 (uint32 BE), then the message id.
    for (const e of taken) expect(e["envelope"]).toMatch(/^500100000001[0-9a-f]+$/)
    // A plain peer never sees a PPX frame, and the sender's heartbeats keep it connected.
    for (const w of [a, b]) {
      expect(ofType(w.events, "invalid")).toEqual([])
      expect(ofType(w.events, "reconnect")).toEqual([])
    }
  })

  it("keeps a busy plain worker (which sends nothing while it works) past its heartbeat expiry", async () => {
    const sender = await openSender()
    const lost = collect(sender, "worker:lost")
    const ready = once(sender, "worker:ready", { signal: AbortSignal.timeout(5000) })
    // 700 ms of work = 7 heartbeat intervals, over twice the 300 ms expiry.
    const slow = pythonWorker(sender.endpoint, "--delay", "700")
    await ready
    const reply = await sender.request(Buffer.from("slow"))
    expect(String(reply)).toBe("py:slow")
    expect(lost).toEqual([])
    expect(sender.stats()).toMatchObject({ acked: 1, redelivered: 0, workersLost: 0 })
    // The worker, deaf while busy, found the sender's heartbeats queued afterwards.
    expect(ofType(slow.events, "reconnect")).toEqual([])
  })

  it.each(["another Python worker", "one of our Workers"])(
    "gives the message of a Python worker killed while holding it to %s",
    async (other) => {
      const sender = await openSender()
      const ready = collect<{ workerId: string }>(sender, "worker:ready")
      const lost = collect<{ workerId: string; requeued: number }>(sender, "worker:lost")
      const holder = pythonWorker(sender.endpoint, "--delay", "60000", "--prefix", "dead:")
      await waitFor(() => expect(ready).toHaveLength(1))

      const reply = sender.request(Buffer.from("job"), { timeout: 8000 })
      reply.catch(() => undefined) // awaited below; do not let an early failure leak it
      await holder.waitFor((e) => e["event"] === "request")

      // The second worker comes once the first holds the message, so only a redelivery can reach it.
      const attempts: number[] = []
      if (other === "one of our Workers") {
        const worker = newWorker({
          connect: sender.endpoint,
          handler: (payload, ctx) => {
            attempts.push(ctx.attempt)
            return Buffer.concat([Buffer.from("ts:"), payload as Buffer])
          },
        })
        await worker.open()
      } else {
        pythonWorker(sender.endpoint, "--prefix", "py:")
      }
      await waitFor(() => expect(ready).toHaveLength(2))
      await holder.kill("SIGKILL")

      const expected = other === "one of our Workers" ? "ts:job" : "py:job"
      expect(String(await reply)).toBe(expected)
      expect(lost).toEqual([expect.objectContaining({ workerId: ready[0]?.workerId, requeued: 1 })])
      expect(sender.stats()).toMatchObject({ acked: 1, redelivered: 1, staleAcks: 0 })
      if (other === "one of our Workers") expect(attempts).toEqual([2])
    },
  )

  it("presumes a plain worker still busy past the ack deadline hung, and gives its message to another", async () => {
    const sender = await openSender({ ackTimeout: 400 })
    const ready = collect<{ workerId: string }>(sender, "worker:ready")
    const lost = collect<{ workerId: string; reason: string }>(sender, "worker:lost")
    const hung = pythonWorker(sender.endpoint, "--delay", "60000", "--prefix", "hung:")
    await waitFor(() => expect(ready).toHaveLength(1))
    const reply = sender.request(Buffer.from("job"), { timeout: 8000 })
    reply.catch(() => undefined) // awaited below
    await hung.waitFor((e) => e["event"] === "request")
    pythonWorker(sender.endpoint, "--prefix", "py:")

    expect(String(await reply)).toBe("py:job")
    expect(lost).toEqual([
      expect.objectContaining({ workerId: ready[0]?.workerId, reason: "no ack within 400 ms" }),
    ])
    expect(sender.stats()).toMatchObject({ acked: 1, redelivered: 1 })
  })

  it("is found again by a plain worker, from a fresh socket, after the sender restarts", async () => {
    const first = await Sender.open({ bind: "tcp://127.0.0.1:*", codec: "raw", ...FAST })
    onTestFinished(() => first.close())
    const endpoint = first.endpoint
    const ready = once(first, "worker:ready", { signal: AbortSignal.timeout(5000) })
    const py = pythonWorker(endpoint, "--reconnect-max", "400")
    await ready
    expect(String(await first.request(Buffer.from("before")))).toBe("py:before")
    await first.close()
    // The sender is gone and silent: after 3 intervals the worker drops its socket for a new one.
    const reconnect = await py.waitFor((e) => e["event"] === "reconnect")
    expect(reconnect["silence"]).toBeGreaterThanOrEqual(300)

    // Sender.close() resolves before libzmq has released a port that had peers connected, so an
    // immediate bind may fail with EADDRINUSE (reported): retry the bind until it succeeds.
    const second = await waitFor(() => openSender({ bind: endpoint }), {
      timeout: 3000,
      interval: 20,
    })
    expect(String(await second.request(Buffer.from("after")))).toBe("py:after")
    expect(second.workers()).toEqual([expect.objectContaining({ protocol: "ppp" })])
    expect(ofType(py.events, "invalid")).toEqual([])
  })
})

describe.runIf(python)("our Worker behind a plain Python PPP queue", () => {
  it.each(["ppx", "ppp"] as const)(
    "with protocol %s, answers a LazyPirateClient and a Python REQ client",
    async (protocol) => {
      const { queue, frontend, backend } = await startPythonQueue(HEARTBEAT)
      const worker = newWorker({ connect: backend, protocol, concurrency: 2 })
      const heard = once(worker, "sender:ready", { signal: AbortSignal.timeout(5000) })
      await worker.open()
      const [session] = (await heard) as [{ protocol: string }]
      // No WELCOME from a plain queue: the worker falls back to plain PPP.
      expect(session.protocol).toBe("ppp")
      await queue.waitFor((e) => e["event"] === "ready")

      const invalid = ofType(queue.events, "invalid")
      if (protocol === "ppx") {
        // The plain queue logs our extended READY (0x01 "PPX" 0x01 msgpack…) as an invalid
        // command, but any message marks a worker ready: it still gets the requests.
        expect(invalid).toEqual([
          expect.objectContaining({ frames: [expect.stringMatching(/^0150505802/)] }),
        ])
      } else {
        expect(invalid).toEqual([])
      }

      const client = new LazyPirateClient({ connect: frontend, codec: "raw", timeout: 3000 })
      onTestFinished(() => client.close())
      const requests = ["a", "b", "c", "d", "e"]
      const replies = await Promise.all(requests.map((r) => client.request(r)))
      expect(replies.map(String)).toEqual(requests.map((r) => `ts:${r}`))

      const py = spawnPython("ppp_client.py", [frontend, "x", "y", "--timeout", "3000"])
      expect(await py.exited).toBe(0)
      expect(ofType(py.events, "reply")).toEqual([
        expect.objectContaining({ reply: "ts:x", frames: 1, tries: 1 }),
        expect.objectContaining({ reply: "ts:y", frames: 1, tries: 1 }),
      ])

      // Nothing the plain queue sent was dropped; only PPP went both ways.
      expect(worker.stats()).toMatchObject({
        received: 7,
        acked: 7,
        dropped: 0,
        sessions: [{ endpoint: backend, connected: true, protocol: "ppp" }],
      })
      expect(ofType(queue.events, "invalid")).toHaveLength(protocol === "ppx" ? 1 : 0)
    },
  )
})

describe.runIf(python)("our ParanoidPirateQueue between plain Python peers", () => {
  it("carries a Python REQ client's requests to a Python PPP worker and back", async () => {
    const queue = await ParanoidPirateQueue.open({
      frontend: "tcp://127.0.0.1:*",
      backend: "tcp://127.0.0.1:*",
      ...FAST,
    })
    onTestFinished(() => queue.close())
    const ready = once(queue, "worker:ready", { signal: AbortSignal.timeout(5000) })
    const worker = pythonWorker(queue.backendEndpoint, "--prefix", "py:")
    await ready

    const client = spawnPython("ppp_client.py", [
      queue.frontendEndpoint,
      "one",
      "two",
      "three",
      "--timeout",
      "3000",
    ])
    expect(await client.exited).toBe(0)
    expect(ofType(client.events, "reply").map((e) => e["reply"])).toEqual([
      "py:one",
      "py:two",
      "py:three",
    ])
    expect(queue.stats()).toMatchObject({ requests: 3, replies: 3, acked: 3, dropped: 0 })
    expect(ofType(worker.events, "invalid")).toEqual([])
  })
})
