/**
 * Bounded memory on every waiting path: calls that are aborted, cancelled or time out, and a
 * failed open, leave nothing behind in the sender's internal maps and queues. These tests read
 * the internal sizes (not the heap), so a leak of a few bytes per call fails them too.
 */
import { describe, expect, it } from "vitest"
import { SPLIT_BYTES, bodyLength } from "../../lib/body.js"
import { encodeBody, msgpackCodec } from "../../lib/codec.js"
import { LevelJournal } from "../../lib/journal/level.js"
import { generateKeyPair, zapDomainCount } from "../../lib/security.js"
import { Sender } from "../../patterns/index.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import { message, ownPayload, type Message } from "../../patterns/paranoid-pirate/core/message.js"
import { tempDir } from "../helpers/journal-files.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

function sizes(sender: Sender): Record<string, number> {
  return sender[internals]()
}

/** Every internal structure empty: nothing pending, nobody waiting. */
function expectEmpty(sender: Sender): void {
  const all = sizes(sender)
  expect(Object.entries(all).filter(([, n]) => n !== 0)).toEqual([])
}

const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => "resolved",
    (err: unknown) => err,
  )

describe("Sender: bounded memory on waiting paths", () => {
  it("sends aborted while waiting for room leave no waiter, frame or signal listener behind", async () => {
    const sender = await openSender({ window: 10 }) // memory journal: the window is the bound
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => sender.send({ i })))
    expect(ids).toHaveLength(10)
    // 5 000 waiting sends with one signal each, and 5 000 sharing one signal.
    const own = Array.from({ length: 5000 }, () => new AbortController())
    const shared = new AbortController()
    const waits = [
      ...own.map((c, i) => settle(sender.send({ i }, { signal: c.signal }))),
      ...Array.from({ length: 5000 }, (_, i) =>
        settle(sender.send({ i }, { signal: shared.signal })),
      ),
    ]
    expect(sender.stats().waiting).toBe(10_000)
    expect(sizes(sender)["signals"]).toBe(5001)
    for (const c of own) c.abort()
    shared.abort()
    const results = await Promise.all(waits)
    expect(results.every((r) => (r as { code?: string }).code === "PIRATE_ABORTED")).toBe(true)
    expect(sender.stats().waiting).toBe(0)
    expect(sizes(sender)).toMatchObject({ sendWaiters: 0, windowWaiters: 0, signals: 0 })
    expect(sender.stats().sent).toBe(10)
  })

  it("an already-aborted signal rejects before anything is accepted", async () => {
    const sender = await openSender()
    await expect(sender.send("x", { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: "PIRATE_ABORTED",
    })
    expect(sender.stats().sent).toBe(0)
    expectEmpty(sender)
  })

  it("requests cancelled or timed out while no worker is connected leave the ready queue", async () => {
    const sender = await openSender()
    const aborts = Array.from({ length: 2000 }, () => new AbortController())
    const aborted = aborts.map((c, i) => settle(sender.request({ i }, { signal: c.signal })))
    const timedOut = Array.from({ length: 2000 }, (_, i) =>
      settle(sender.request({ i }, { timeout: 50 })),
    )
    expect(sizes(sender)["messages"]).toBe(4000)
    for (const c of aborts) c.abort()
    const results = await Promise.all([...aborted, ...timedOut])
    expect(results.filter((r) => (r as { code?: string }).code === "PIRATE_ABORTED")).toHaveLength(
      2000,
    )
    expect(results.filter((r) => (r as { code?: string }).code === "PIRATE_TIMEOUT")).toHaveLength(
      2000,
    )
    expect(sender.stats().ready).toBe(0)
    expectEmpty(sender)
  })

  it("a request's timeout covers its wait for room in a full window", async () => {
    const sender = await openSender({ window: 5 })
    for (let i = 0; i < 5; i++) await sender.send(i)
    const started = performance.now()
    await expect(sender.request("late", { timeout: 300 })).rejects.toMatchObject({
      code: "PIRATE_TIMEOUT",
    })
    expect(performance.now() - started).toBeLessThan(2000)
    expect(sizes(sender)).toMatchObject({ windowWaiters: 0, signals: 0, reserved: 0 })
  })

  it("aborted drained() calls leave no waiter", async () => {
    const sender = await openSender()
    await sender.send("pending")
    const calls = Array.from({ length: 1000 }, () => new AbortController())
    const waits = calls.map((c) => settle(sender.drained({ signal: c.signal })))
    expect(sizes(sender)["drainedWaiters"]).toBe(1000)
    for (const c of calls) c.abort()
    const results = await Promise.all(waits)
    expect(results.every((r) => (r as { code?: string }).code === "PIRATE_ABORTED")).toBe(true)
    expect(sizes(sender)["drainedWaiters"]).toBe(0)
  })

  it("ends with every structure empty once all is acked", async () => {
    const dir = await tempDir("pirate-mem-")
    const sender = await openSender({ journal: dir, window: 50, codec: "raw" })
    const sends = Array.from({ length: 500 }, (_, i) => sender.send(Buffer.from([i & 255])))
    await Promise.all(sends)
    expect(sender.stats().backlog).toBeGreaterThan(0) // beyond the window: on disk
    await openWorker(sender.endpoint, { handler: () => Buffer.alloc(0), codec: "raw" })
    await sender.drained()
    await sender.journal.stats().then((s) => expect(s.pending).toBe(0))
    expectEmpty(sender)
  })

  it("a failed open (address in use) leaves no ZAP domain or journal lock", async () => {
    const dir = await tempDir("pirate-mem-")
    const holder = await openSender()
    const domains = zapDomainCount()
    const server = generateKeyPair()
    const second = new Sender({
      bind: holder.endpoint,
      journal: dir,
      curve: { ...server, allow: [generateKeyPair().publicKey] },
    })
    await expect(second.open()).rejects.toMatchObject({
      code: "PIRATE_ADDRESS_IN_USE",
      cause: expect.objectContaining({ code: "EADDRINUSE" }) as unknown,
    })
    expect(zapDomainCount()).toBe(domains)
    // The journal was closed: another process (here, a LevelJournal) may take it.
    const journal = new LevelJournal(dir)
    await journal.open()
    await journal.close()
  })
})

describe("ownPayload: a message that waits in memory holds only its own bytes", () => {
  const waiting = (payload: Buffer): Message =>
    message({ id: "0", payload, attempt: 1, enqueuedAt: 0, t0: 0, state: "ready", durable: true })

  it("copies a view of a batch read back from the journal, keeps a buffer of its own", () => {
    const batch = Buffer.alloc(64 * 1024, 7)
    const m = waiting(batch.subarray(100, 356))
    ownPayload(m)
    expect(m.payload.buffer).not.toBe(batch.buffer)
    expect(m.payload.equals(Buffer.alloc(256, 7))).toBe(true)
    const alone = Buffer.allocUnsafeSlow(4096)
    const n = waiting(alone)
    ownPayload(n)
    expect(n.payload).toBe(alone)
  })

  it("keeps a split body (the producer's own Buffer, with its prefix) as it is", () => {
    // A view of a larger buffer, which ownPayload() would copy were it not a split body.
    const large = Buffer.alloc(3 * SPLIT_BYTES, 1).subarray(0, SPLIT_BYTES + 10)
    const body = encodeBody(msgpackCodec, large)
    const m = waiting(body)
    ownPayload(m)
    expect(m.payload).toBe(body)
    expect(bodyLength(m.payload)).toBe(bodyLength(body))
  })
})
