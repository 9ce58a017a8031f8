import { getEventListeners, once } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer, Router } from "zeromq"
import { Sender, Worker, type WorkerStats } from "../../patterns/index.js"
import {
  PACK_BYTES,
  PPX,
  decodeEnvelope,
  decodeReady,
  encodeEnvelope,
  encodeReady,
  encodeWelcome,
  packBodies,
  packEnvelopes,
  unpackBodies,
  unpackEnvelopes,
} from "../../lib/protocol.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { forkFixture, type Child } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

const signal = (ms = 8000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

/** The stats of the worker in a `pp-worker.ts` child. */
async function childStats(child: Child): Promise<WorkerStats> {
  const asked = child.messages.length
  child.process.send({ type: "stats" })
  const answer = await child.waitFor(
    (m) => m["type"] === "stats" && child.messages.indexOf(m) >= asked,
  )
  return answer["stats"] as WorkerStats
}

describe("Sender and Worker", () => {
  it("delivers every message once to connected workers and drains", async () => {
    const sender = await openSender()
    const seen = new Map<number, number>()
    const handler = (p: unknown): unknown => {
      const i = (p as { i: number }).i
      seen.set(i, (seen.get(i) ?? 0) + 1)
      return null
    }
    await openWorker(sender.endpoint, { handler, concurrency: 4 })
    await openWorker(sender.endpoint, { handler, concurrency: 4 })
    const ids = await Promise.all(Array.from({ length: 500 }, (_, i) => sender.send({ i })))
    expect(new Set(ids).size).toBe(500)
    expect([...ids].sort()).toEqual(ids) // ids sort in send order
    await sender.drained(signal())
    expect(seen.size).toBe(500)
    expect([...seen.values()].every((n) => n === 1)).toBe(true)
    expect(sender.stats()).toMatchObject({
      sent: 500,
      acked: 500,
      inFlight: 0,
      ready: 0,
      redelivered: 0,
      workers: 2,
    })
  })

  it("request() resolves with the worker's reply and handlers see id and attempt", async () => {
    const sender = await openSender()
    await openWorker(sender.endpoint, {
      handler: (p, ctx) => ({ echo: p, id: ctx.id, attempt: ctx.attempt }),
    })
    const reply = (await sender.request({ hello: "world" })) as {
      echo: unknown
      id: string
      attempt: number
    }
    expect(reply.echo).toEqual({ hello: "world" })
    expect(reply.id).toMatch(/^[0-9a-f]{16}$/)
    expect(reply.attempt).toBe(1)
  })

  it("a worker may start before its sender and waits for it", async () => {
    const probe = await Sender.open({ bind: "tcp://127.0.0.1:*" })
    const endpoint = probe.endpoint
    await probe.close()
    const worker = await openWorker(endpoint, { handler: (p) => p })
    const ready = once(worker, "sender:ready", signal())
    const sender = await openSender({ bind: endpoint })
    await ready
    expect(await sender.request(42)).toBe(42)
  })

  it("sends no more to a worker than its credit", async () => {
    const sender = await openSender()
    let running = 0
    let peak = 0
    const release: (() => void)[] = []
    const worker = await openWorker(sender.endpoint, {
      concurrency: 3,
      handler: async () => {
        running++
        peak = Math.max(peak, running)
        await new Promise<void>((r) => release.push(r))
        running--
      },
    })
    for (let i = 0; i < 10; i++) void sender.send(i)
    await waitFor(() => expect(sender.stats().inFlight, "3 in flight").toBe(3))
    // The tasks the sender counts in flight may still be on their way to the worker.
    await waitFor(() => expect(worker.stats()).toMatchObject({ running: 3, queued: 0 }))
    expect(sender.stats().ready).toBe(7)
    while (sender.stats().acked < 10) {
      release.shift()?.()
      await new Promise((r) => setImmediate(r))
    }
    await sender.drained(signal())
    expect(peak).toBe(3)
  })

  it("cuts a batch before its packed bodies would exceed PACK_BYTES; one larger body travels alone", async () => {
    const sender = await openSender({ codec: "raw" })
    const KiB = 1024
    // All ready before the worker arrives, so that one dispatch could take them in one batch.
    const payloads = [600, 600, 600, 1, 1, 1100].map((k, i) => Buffer.alloc(k * KiB, 0x61 + i))
    for (const p of payloads) await sender.send(p)
    await waitFor(() => expect(sender.stats().ready, "all ready").toBe(payloads.length))
    // A raw DEALER plays a PPX worker whose credit could take them all at once.
    const peer = new Dealer({ linger: 0, receiveTimeout: 5000 })
    onTestFinished(() => peer.close())
    peer.connect(sender.endpoint)
    await peer.send(encodeReady({ credit: 64, heartbeatInterval: 60_000, liveness: 3 }))
    const batches: { envelopes: Buffer[]; bodies: Buffer[]; packed: number }[] = []
    let received = 0
    for (let i = 0; i < 100 && received < payloads.length; i++) {
      const msg = await peer.receive()
      if (msg[0]?.length !== 1 || msg[0][0] !== PPX.TASKS) continue // WELCOME, HEARTBEAT
      expect(msg, "TASKS is [0x11, envelopes, bodies]").toHaveLength(3)
      const envelopes = unpackEnvelopes(msg[1])
      expect(envelopes, "a well-formed envelopes frame").not.toBeNull()
      const bodies = unpackBodies(msg[2], envelopes!.length)
      expect(bodies, "one body per envelope").not.toBeNull()
      batches.push({ envelopes: envelopes!, bodies: bodies!, packed: msg[2]!.length })
      received += bodies!.length
    }
    const sizes = batches.map((b) => b.bodies.map((x) => x.length / KiB))
    expect(received, `bodies received, in batches ${JSON.stringify(sizes)}`).toBe(payloads.length)
    expect(batches.length, JSON.stringify(sizes)).toBeGreaterThan(1)
    for (const b of batches) {
      if (b.bodies.length > 1)
        expect(b.packed, JSON.stringify(sizes)).toBeLessThanOrEqual(PACK_BYTES)
    }
    // Cut only where needed: the small ones ride along with a large one.
    expect(
      batches.some((b) => b.bodies.length > 1),
      JSON.stringify(sizes),
    ).toBe(true)
    const all = batches.flatMap((b) => b.bodies)
    // Each payload exactly once (each is filled with its own byte).
    const key = (b: Buffer): string => `${b[0]}:${b.length}`
    expect(all.map(key).sort()).toEqual(payloads.map(key).sort())
    for (const p of payloads) expect(all.some((b) => b.equals(p))).toBe(true)
    // Ack them all in one ACKS [0x12, envelopes, replies]: the sender takes every ack.
    const envelopes = batches.flatMap((b) => b.envelopes)
    const replies = envelopes.map((e) => Buffer.from(`re ${decodeEnvelope(e)?.id}`))
    await peer.send([Buffer.from([PPX.ACKS]), packEnvelopes(envelopes), packBodies(replies)])
    await waitFor(() => expect(sender.stats().acked, "all acked").toBe(payloads.length))
    expect(sender.stats()).toMatchObject({ inFlight: 0, ready: 0, dropped: 0, staleAcks: 0 })
  })

  it("packs no more into one TASKS frame than the worker's maxMessageSize", async () => {
    const sender = await openSender({ codec: "raw" })
    // 10 × 2000 bytes, all ready at once: one batch would make a 20 KB bodies frame.
    for (let i = 0; i < 10; i++) await sender.send(Buffer.alloc(2000, i))
    const seen: number[] = []
    await openWorker(sender.endpoint, {
      codec: "raw",
      concurrency: 16,
      maxMessageSize: 8192,
      handler: (p) => {
        seen.push((p as Buffer)[0] as number)
        return Buffer.alloc(0)
      },
    })
    await sender.drained(signal())
    expect(seen.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(sender.stats()).toMatchObject({ acked: 10, workersLost: 0, redelivered: 0, dead: 0 })
  })

  it("packs no more into one ACKS frame than the sender's maxMessageSize", async () => {
    const sender = await openSender({ codec: "raw", maxMessageSize: 8192 })
    // Replies of 2000 bytes that all complete in one turn: one ACKS would carry 20 KB of them.
    await openWorker(sender.endpoint, {
      codec: "raw",
      concurrency: 16,
      handler: (p) => Buffer.alloc(2000, (p as Buffer)[0]),
    })
    const replies = (await Promise.all(
      Array.from({ length: 10 }, (_, i) => sender.request(Buffer.from([i]))),
    )) as Buffer[]
    expect(replies.map((r) => [r.length, r[0]])).toEqual(
      Array.from({ length: 10 }, (_, i) => [2000, i]),
    )
    expect(sender.stats()).toMatchObject({ workersLost: 0, redelivered: 0, dropped: 0 })
  })

  it("a worker that said GOODBYE and still heartbeats is not registered again as a plain PPP worker", async () => {
    const sender = await openSender({ codec: "raw" })
    const ready: { protocol: string; credit: number }[] = []
    sender.on("worker:ready", (e) => ready.push(e))
    const lost: unknown[] = []
    sender.on("worker:lost", (e) => lost.push(e))
    const peer = new Dealer({ linger: 0, receiveTimeout: 5000 })
    onTestFinished(() => peer.close())
    peer.connect(sender.endpoint)
    const hello = encodeReady({ credit: 4, heartbeatInterval: 60_000, liveness: 3 })
    await peer.send(hello)
    const [welcome] = await peer.receive()
    expect(welcome?.[0]).toBe(PPX.WELCOME)
    // Closing with nothing held: GOODBYE, then a heartbeat on its way out (as a worker whose
    // heartbeat timer fires before it closes its socket would send).
    await peer.send(Buffer.from([PPX.GOODBYE]))
    // The sender answers with its own GOODBYE: nothing follows it on this connection.
    const [confirm] = await peer.receive()
    expect([...(confirm as Buffer)]).toEqual([PPX.GOODBYE])
    await peer.send(Buffer.from([0x02]))
    // Messages of one connection are handled in order: once this READY registers it again,
    // the heartbeat before it has been handled too.
    const again = once(sender, "worker:ready", signal())
    await peer.send(hello)
    await again
    expect(ready.map((e) => e.protocol)).toEqual(["ppx", "ppx"])
    expect(lost).toEqual([])
    expect(sender.stats()).toMatchObject({ workers: 1, workersLost: 0 })
  })

  it("a worker takes the heartbeat settings of the WELCOME it gets", async () => {
    // A raw ROUTER plays the sender and answers a worker announcing one heartbeat a minute with
    // 100 ms × 3: the worker must heartbeat and give the sender up at that pace, not a minute's.
    const router = new Router({ linger: 0, receiveTimeout: 5000 })
    onTestFinished(() => router.close())
    await router.bind("tcp://127.0.0.1:*")
    const worker = await openWorker(router.lastEndpoint as string, {
      codec: "raw",
      heartbeatInterval: 60_000,
      liveness: 3,
      handler: () => Buffer.alloc(0),
    })
    const [id, ready] = await router.receive()
    expect(decodeReady(ready as Buffer)).toMatchObject({ heartbeatInterval: 60_000, liveness: 3 })
    const lost = once(worker, "sender:lost", signal(5000))
    await router.send([
      id as Buffer,
      ...encodeWelcome({ version: PPX.VERSION, heartbeatInterval: 100, liveness: 3 }),
    ])
    const [, heartbeat] = await router.receive()
    expect([...(heartbeat as Buffer)]).toEqual([0x02])
    const [event] = (await lost) as [{ reason: string }]
    expect(event.reason).toMatch(/no heartbeat for \d+ ms/)
  })

  it("a closing worker handles the tasks the sender wrote before it read the GOODBYE", async () => {
    // A raw ROUTER plays the sender. The worker, idle, is closed: it says GOODBYE. The "sender"
    // then writes one more TASKS (as a sender does that dispatched before it read the GOODBYE),
    // and only then answers GOODBYE. The worker must run that task and ack it before it closes.
    const router = new Router({ linger: 0, receiveTimeout: 5000 })
    onTestFinished(() => router.close())
    await router.bind("tcp://127.0.0.1:*")
    const handled: string[] = []
    const worker = await openWorker(router.lastEndpoint as string, {
      codec: "raw",
      handler: (p) => {
        handled.push(String(p))
        return Buffer.from(`done ${String(p)}`)
      },
    })
    const [id, ready] = await router.receive()
    const hello = decodeReady(ready as Buffer)
    await router.send([
      id as Buffer,
      ...encodeWelcome({
        version: PPX.VERSION,
        heartbeatInterval: hello?.heartbeatInterval ?? 100,
        liveness: hello?.liveness ?? 3,
      }),
    ])
    await once(worker, "sender:ready", signal())
    const closed = worker.close()
    const frames = async (): Promise<Buffer[]> => {
      for (let i = 0; i < 100; i++) {
        const [, ...rest] = await router.receive()
        if (!(rest.length === 1 && rest[0]?.[0] === 0x02)) return rest // skip heartbeats
      }
      throw new Error("only heartbeats")
    }
    expect(await frames()).toEqual([Buffer.from([PPX.GOODBYE])])
    const envelope = encodeEnvelope("00000000000000a1", 1)
    await router.send([
      id as Buffer,
      Buffer.from([PPX.TASKS]),
      packEnvelopes([envelope]),
      packBodies([Buffer.from("late")]),
    ])
    await router.send([id as Buffer, Buffer.from([PPX.GOODBYE])])
    const acks = await frames()
    expect(acks[0]?.[0]).toBe(PPX.ACKS)
    expect(unpackEnvelopes(acks[1])).toEqual([envelope])
    expect(unpackBodies(acks[2], 1)).toEqual([Buffer.from("done late")])
    await closed
    expect(handled).toEqual(["late"])
    expect(worker.stats()).toMatchObject({ acked: 1, discarded: 0 })
  })

  it("retries a failing message with backoff, then dead-letters it; replay delivers it again", async () => {
    const sender = await openSender({
      maxAttempts: 3,
      retryBackoff: { initial: 20, max: 100, factor: 2, jitter: 0 },
    })
    const attempts: { attempt: number; at: number }[] = []
    let fail = true
    await openWorker(sender.endpoint, {
      handler: (_p, ctx) => {
        attempts.push({ attempt: ctx.attempt, at: performance.now() })
        if (fail) throw new Error("boom")
        return "ok"
      },
    })
    const dead = once(sender, "message:dead", signal())
    const id = await sender.send("job")
    const [event] = (await dead) as [{ id: string; attempts: number; error: string }]
    expect(event).toEqual({ id, attempts: 3, error: "boom" })
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3])
    // backoff: ~20 ms before the 2nd attempt, ~40 ms before the 3rd
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(15)
    expect(attempts[2]!.at - attempts[1]!.at).toBeGreaterThanOrEqual(35)
    const letters = await sender.deadLetters()
    expect(letters).toHaveLength(1)
    expect(letters[0]).toMatchObject({ id, attempts: 3, lastError: "boom" })
    expect(sender.decode(letters[0]!.payload)).toBe("job")
    expect(sender.stats()).toMatchObject({ dead: 1, nacked: 3 })

    fail = false
    expect(await sender.replay([id, "0000000000000000"])).toEqual([id])
    await sender.drained(signal())
    expect(attempts.at(-1)).toMatchObject({ attempt: 1 })
    expect(await sender.deadLetters()).toHaveLength(0)
    expect(sender.stats()).toMatchObject({ dead: 0, acked: 1 })
  })

  it("request() rejects with PIRATE_DEAD_LETTER when the handler keeps failing", async () => {
    const sender = await openSender({ maxAttempts: 2, retryBackoff: { initial: 1, max: 1 } })
    await openWorker(sender.endpoint, {
      handler: () => {
        throw new Error("nope")
      },
    })
    await expect(sender.request("x")).rejects.toMatchObject({
      code: "PIRATE_DEAD_LETTER",
      attempts: 2,
    })
  })

  it("rejects undecodable payloads to the dead letters at once, with the decode error", async () => {
    // Bytes as they are, from a codec without a name: a raw sender would refuse the msgpack
    // worker at once (codec agreement), an unnamed codec is never checked.
    const sender = await openSender({
      codec: { encode: (b) => b as Buffer, decode: (f) => f },
    })
    let calls = 0
    await openWorker(sender.endpoint, {
      handler: () => {
        calls++
      },
    }) // msgpack worker
    const dead = once(sender, "message:dead", signal())
    await sender.send(Buffer.from([0xc1])) // 0xc1 is never valid msgpack
    const [event] = (await dead) as [{ attempts: number; error: string }]
    expect(event.attempts).toBe(1)
    expect(event.error).toMatch(/msgpack/)
    expect(calls).toBe(0)
  })

  it("request() times out and aborts with named errors; close() rejects pending requests", async () => {
    const sender = await openSender()
    await expect(sender.request("nobody", { timeout: 50 })).rejects.toMatchObject({
      code: "PIRATE_TIMEOUT",
    })
    const ac = new AbortController()
    const p = sender.request("nobody", { signal: ac.signal })
    ac.abort(new Error("stop"))
    await expect(p).rejects.toMatchObject({ code: "PIRATE_ABORTED" })
    expect(sender.stats().ready).toBe(0) // cancelled requests are not delivered later
    const pending = sender.request("nobody")
    await sender.close()
    await expect(pending).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    await expect(sender.send(1)).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
  })

  it("send() waits while the window is full (backpressure)", async () => {
    const sender = await openSender({ window: 5 })
    const sends = Array.from({ length: 8 }, (_, i) => sender.send(i))
    let resolved = 0
    for (const s of sends) void s.then(() => resolved++)
    await waitFor(() => expect(resolved, "5 sends").toBe(5))
    await new Promise((r) => setTimeout(r, 50))
    expect(resolved).toBe(5)
    await openWorker(sender.endpoint, { handler: () => null })
    await Promise.all(sends)
    await sender.drained(signal())
  })

  it("lets many waiting sends share one AbortSignal: one listener, removed once they are in", async () => {
    const sender = await openSender({ window: 10 })
    const ac = new AbortController()
    const sends = Array.from({ length: 2000 }, (_, i) => sender.send(i, { signal: ac.signal }))
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(1)
    await openWorker(sender.endpoint, { handler: () => null, concurrency: 8 })
    await Promise.all(sends)
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0)

    const blocked = new AbortController()
    const stuck = await openSender({ window: 2 })
    const waiting = Array.from({ length: 50 }, (_, i) => stuck.send(i, { signal: blocked.signal }))
    blocked.abort(new Error("enough"))
    const results = await Promise.allSettled(waiting)
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(2)
    const codes = results.flatMap((r) =>
      r.status === "rejected" ? [(r.reason as { code?: string }).code] : [],
    )
    expect(codes).toEqual(Array.from({ length: 48 }, () => "PIRATE_ABORTED"))
  })

  it("redelivers a message whose live worker never acks within ackTimeout; extend() renews it", async () => {
    const sender = await openSender({ ackTimeout: 150 })
    const calls: string[] = []
    await openWorker(sender.endpoint, {
      handler: async (p, ctx) => {
        calls.push(`${String(p)}#${ctx.attempt}`)
        if (p === "slow" && ctx.attempt === 1) await new Promise(() => undefined) // hangs
        if (p === "long") {
          for (let i = 0; i < 4; i++) {
            await new Promise((r) => setTimeout(r, 60))
            ctx.extend()
          }
        }
        return p
      },
      concurrency: 2,
      closeTimeout: 50, // the hung handler is abandoned at the end
    })
    expect(await sender.request("long")).toBe("long")
    expect(calls).toEqual(["long#1"]) // 240 ms of work, never redelivered thanks to extend()
    const requeued = once(sender, "message:requeued", signal())
    expect(await sender.request("slow")).toBe("slow")
    expect(((await requeued) as [{ reason: string }])[0].reason).toMatch(/no ack within 150 ms/)
    expect(calls).toEqual(["long#1", "slow#1", "slow#2"])
  })

  it("ignores a stale ack from a worker it gave up on", async () => {
    const sender = await openSender({ ackTimeout: 100, heartbeatInterval: 50 })
    // A plain PPP worker written by hand.
    const plain = new Dealer({ linger: 0 })
    onTestFinished(() => plain.close())
    plain.connect(sender.endpoint)
    await plain.send([Buffer.from([0x01])])
    const reply = sender.request("task")
    let task: Buffer[]
    do task = await plain.receive()
    while (task.length !== 3)
    expect(decodeEnvelope(task[0])).toMatchObject({ attempt: 1 })
    // The plain worker sits on it past the ack deadline; a real worker takes the redelivery.
    const requeued = once(sender, "message:requeued", signal())
    await requeued
    await openWorker(sender.endpoint, { handler: () => "from the second worker" })
    expect(await reply).toBe("from the second worker")
    await plain.send([task[0]!, Buffer.alloc(0), Buffer.from([0xa3, 0x6f, 0x6c, 0x64])]) // "old"
    await waitFor(() => expect(sender.stats().staleAcks, "stale ack counted").toBe(1))
    expect(sender.stats()).toMatchObject({ acked: 1, redelivered: 1 })
  })

  it("retries a message whose plain PPP worker failed without replying, and keeps using the worker", async () => {
    const sender = await openSender({ retryBackoff: { initial: 1, max: 1 } })
    const calls: string[] = []
    await openWorker(sender.endpoint, {
      protocol: "ppp",
      handler: (p, ctx) => {
        calls.push(`${String(p)}#${ctx.attempt}`)
        if (p === "one" && ctx.attempt === 1) throw new Error("first try fails")
        return p
      },
    })
    await Promise.all([sender.send("one"), sender.send("two")])
    await sender.drained(signal())
    expect(calls).toContain("one#1")
    expect(calls).toContain("one#2")
    expect(calls).toContain("two#1")
    expect(sender.stats()).toMatchObject({ acked: 2, nacked: 1 })
  })

  it("counts and drops malformed frames without crashing", async () => {
    const sender = await openSender()
    const rogue = new Dealer({ linger: 0 })
    onTestFinished(() => rogue.close())
    rogue.connect(sender.endpoint)
    const env1 = encodeEnvelope("0000000000000001", 1)
    const env2 = encodeEnvelope("0000000000000002", 1)
    const x = Buffer.from("x")
    const junk: Buffer[][] = [
      [Buffer.from([0x7f])],
      [Buffer.from([0x01, 0x50, 0x50, 0x58, 0x01, 0xc1])], // READY claiming PPX with bad metadata
      [Buffer.from("garbage"), Buffer.from("more")],
      [Buffer.from([0x12]), Buffer.from("not an envelope"), Buffer.from("x")],
      [Buffer.from([0x13]), Buffer.from("x"), Buffer.from([0xc1])],
      // ACKS [0x12, envelopes, replies] whose replies do not match its envelopes, and one in the
      // draft format (a frame per reply)
      [Buffer.from([0x12]), packEnvelopes([env1]), packBodies([])],
      [
        Buffer.from([0x12]),
        packEnvelopes([env1]),
        packBodies([Buffer.from("a"), Buffer.from("b")]),
      ],
      [
        Buffer.from([0x12]),
        packEnvelopes([env1]),
        Buffer.concat([packBodies([x]), Buffer.from([0])]),
      ],
      [Buffer.from([0x12]), packEnvelopes([env1, env2]), x, x],
    ]
    for (const frames of junk) await rogue.send(frames)
    await waitFor(() => expect(sender.stats().dropped, "drops").toBeGreaterThanOrEqual(junk.length))
    expect(sender.stats().dropped, "each counted once").toBe(junk.length)
    await openWorker(sender.endpoint, { handler: (p) => p })
    expect(await sender.request("still fine")).toBe("still fine")
  })

  it("validates options with errors that name them", () => {
    expect(() => new Sender({ bind: "nope" })).toThrow(TypeError)
    expect(() => new Sender({ bind: "tcp://127.0.0.1:*", maxAttempts: 0 })).toThrow(
      /'maxAttempts' must be a positive integer, got 0/,
    )
    expect(() => new Sender({ bind: "tcp://127.0.0.1:*", durability: "disk" as never })).toThrow(
      /'durability'/,
    )
    expect(() => new Worker({ connect: "tcp://127.0.0.1:1", handler: "x" as never })).toThrow(
      /'handler' must be a function/,
    )
    expect(
      () => new Worker({ connect: "tcp://127.0.0.1:1", handler: () => 1, concurrency: 1.5 }),
    ).toThrow(/'concurrency'/)
    expect(() => new Worker({ connect: [], handler: () => 1 })).toThrow(/'connect'/)
  })
})

describe("failures of workers and senders", () => {
  it("gives the messages of a SIGKILLed worker to the others; none lost", async () => {
    const sender = await openSender()
    const child = forkFixture("pp-worker.ts", [
      sender.endpoint,
      JSON.stringify({ hold: true, concurrency: 5 }),
    ])
    await child.waitFor((m) => m["type"] === "ready")
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => sender.send(i)))
    await waitFor(() =>
      expect(child.messages.filter((m) => m["type"] === "job").length, "child holds 5").toBe(5),
    )
    const done = new Map<string, number>()
    await openWorker(sender.endpoint, {
      concurrency: 4,
      handler: (_p, ctx) => {
        done.set(ctx.id, (done.get(ctx.id) ?? 0) + 1)
      },
    })
    const lost = once(sender, "worker:lost", signal())
    const killedAt = performance.now()
    await child.kill("SIGKILL")
    const [event] = (await lost) as [{ reason: string; requeued: number }]
    expect(event.requeued).toBe(5)
    await sender.drained(signal())
    expect(performance.now() - killedAt).toBeLessThan(2000)
    expect([...done.keys()].sort()).toEqual(ids)
    expect(sender.stats()).toMatchObject({ acked: 20, redelivered: 5, workersLost: 1 })
  })

  it("detects a SIGSTOPped worker by its missing heartbeats and redelivers its messages", async () => {
    const sender = await openSender()
    const child = forkFixture("pp-worker.ts", [
      sender.endpoint,
      JSON.stringify({ delay: 300, concurrency: 3, heartbeatInterval: 100, liveness: 3 }),
    ])
    await child.waitFor((m) => m["type"] === "ready")
    const ids = await Promise.all(Array.from({ length: 3 }, (_, i) => sender.send(i)))
    await waitFor(() =>
      expect(child.messages.filter((m) => m["type"] === "job").length, "child has 3").toBe(3),
    )
    child.process.kill("SIGSTOP")
    const stoppedAt = performance.now()
    const lost = once(sender, "worker:lost", signal())
    const [event] = (await lost) as [{ reason: string }]
    const detectedAfter = performance.now() - stoppedAt
    expect(event.reason).toMatch(/no heartbeat/)
    expect(detectedAfter).toBeGreaterThanOrEqual(150)
    const done: string[] = []
    const other = await openWorker(sender.endpoint, {
      concurrency: 3,
      handler: (_p, ctx) => void done.push(ctx.id),
    })
    await sender.drained(signal())
    expect(done.sort()).toEqual(ids)
    // Let the stopped worker go on: whatever it sends now is stale and must not count, and it
    // comes back as the PPX worker it is (announcing itself again), never as a plain PPP one.
    const back: { protocol: string }[] = []
    sender.on("worker:ready", (e) => back.push(e))
    child.process.kill("SIGCONT")
    await waitFor(() =>
      expect(
        child.messages.filter((m) => m["type"] === "done").length,
        "stopped worker finishes",
      ).toBe(3),
    )
    await waitFor(() => expect(back.length, "the stopped worker back").toBeGreaterThan(0))
    expect(back.map((e) => e.protocol)).toEqual(["ppx"])
    expect(await sender.request("after")).toBe(undefined)
    expect(sender.stats()).toMatchObject({ acked: 4, staleAcks: 0 })
    // Its three results came too late: thrown away, not counted as acked.
    const stats = await childStats(child)
    expect(stats.acked + other.stats().acked).toBe(4)
    expect(stats.discarded).toBe(3)
  })

  it("a worker frozen past its liveness counts no ack that the sender would not take", async () => {
    const sender = await openSender()
    const child = forkFixture("pp-worker.ts", [
      sender.endpoint,
      JSON.stringify({ freeze: 800, heartbeatInterval: 100, liveness: 3, reconnectInitial: 50 }),
    ])
    await child.waitFor((m) => m["type"] === "ready")
    const lost = once(sender, "worker:lost", signal())
    await sender.send("freeze") // its first attempt blocks the child's event loop for 800 ms
    const [event] = (await lost) as [{ reason: string }]
    expect(event.reason).toMatch(/no heartbeat/)
    // It wakes up, finds its session expired, reconnects and runs the second attempt.
    await sender.drained(signal())
    expect(sender.stats()).toMatchObject({ acked: 1, redelivered: 1, staleAcks: 0 })
    expect(await childStats(child)).toMatchObject({ acked: 1, discarded: 1 })
  })

  it("follows the heartbeat interval a worker announces, even when shorter than the sender's", async () => {
    const sender = await openSender({ heartbeatInterval: 5000 })
    const child = forkFixture("pp-worker.ts", [
      sender.endpoint,
      JSON.stringify({ hold: true, heartbeatInterval: 50, liveness: 3 }),
    ])
    await child.waitFor((m) => m["type"] === "ready")
    await sender.send("held")
    await child.waitFor((m) => m["type"] === "job")
    child.process.kill("SIGSTOP")
    const stoppedAt = performance.now()
    const [event] = (await once(sender, "worker:lost", signal())) as [{ reason: string }]
    expect(event.reason).toMatch(/no heartbeat/)
    // 3 × 50 ms plus a tick of 12 ms and scheduling, far below the sender's own 3 × 5 s
    expect(performance.now() - stoppedAt).toBeLessThan(1500)
  })

  it("workers notice a restarted sender, reconnect and resume", async () => {
    const first = await Sender.open({ bind: "tcp://127.0.0.1:*", heartbeatInterval: 100 })
    const endpoint = first.endpoint
    const got: unknown[] = []
    const worker = await openWorker(endpoint, { handler: (p) => void got.push(p) })
    expect(await first.request("one")).toBe(undefined)
    const lost = once(worker, "sender:lost", signal())
    await first.close()
    await lost
    const ready = once(worker, "sender:ready", signal())
    const second = await openSender({ bind: endpoint })
    await ready
    await second.request("two")
    expect(got).toEqual(["one", "two"])
  })

  it("keeps an independent session with each sender: a dead one does not stall the other", async () => {
    const a = await openSender()
    const probe = await Sender.open({ bind: "tcp://127.0.0.1:*" })
    const deadEndpoint = probe.endpoint
    await probe.close()
    const worker = await openWorker([deadEndpoint, a.endpoint], {
      handler: (p) => p,
      concurrency: 2,
    })
    expect(await a.request("via a")).toBe("via a")
    const b = await openSender({ bind: deadEndpoint })
    expect(await b.request("via b")).toBe("via b")
    const lost = once(worker, "sender:lost", signal())
    await b.close()
    await lost
    expect(await a.request("a still works")).toBe("a still works")
  })

  it("close() lets running handlers finish and acks them", async () => {
    const sender = await openSender()
    let finished = 0
    const worker = await Worker.open({
      connect: sender.endpoint,
      heartbeatInterval: 100,
      concurrency: 2,
      handler: async () => {
        await new Promise((r) => setTimeout(r, 100))
        finished++
      },
    })
    await Promise.all([sender.send(1), sender.send(2)])
    await waitFor(() => expect(worker.stats().running, "2 running").toBe(2))
    await worker.close()
    expect(finished).toBe(2)
    await waitFor(() => expect(sender.stats().acked, "2 acked").toBe(2))
    expect(sender.stats()).toMatchObject({ redelivered: 0, workersLost: 0 })
  })
})
