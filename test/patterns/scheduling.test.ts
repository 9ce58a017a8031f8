/**
 * Scheduling and ordering in one process: `priority`, `key` (with `keyOnDead`), `delay` /
 * `notBefore`, `ttl` / `expiresAt` and `cancel()`, with a memory journal (delayed messages wait
 * in the window) and with a LevelJournal (they wait in its scheduled store).
 */
import { once } from "node:events"
import { describe, expect, it } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import type { Sender } from "../../patterns/index.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import { tempDir } from "../helpers/journal-files.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

const timeout = (ms = 15_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

/** A journal for each kind of sender: none (memory) and a LevelJournal in a fresh directory. */
const journals = [
  ["memory", (): Promise<{ journal?: string }> => Promise.resolve({})],
  ["level", async (): Promise<{ journal?: string }> => ({ journal: await tempDir("sched-") })],
] as const

function sizes(sender: Sender): Record<string, number> {
  return sender[internals]()
}

describe.each(journals)("scheduling (%s journal)", (_kind, journal) => {
  it("dispatches higher priorities first, equal ones in send order", async () => {
    const sender = await openSender({ ...(await journal()) })
    const sent: { i: number; p: number }[] = []
    const priorities = [4, 9, 0, 7, 4, 2, 9, 5, 1, 8]
    for (let i = 0; i < 10_000; i++) sent.push({ i, p: priorities[(i * 7) % 10] as number })
    await Promise.all(sent.map((m) => sender.send(m, { priority: m.p })))
    expect(sender.stats().ready).toBe(10_000)
    const handled: { i: number; p: number }[] = []
    await openWorker(sender.endpoint, {
      concurrency: 1,
      handler: (m) => void handled.push(m as { i: number; p: number }),
    })
    await sender.drained(timeout())
    expect(handled).toHaveLength(10_000)
    // Every message was ready before the worker came: the order is by priority, then by send.
    const expected = [...sent].sort((a, b) => b.p - a.p || a.i - b.i)
    expect(handled.map((m) => m.i)).toEqual(expected.map((m) => m.i))
  })

  it("processes the messages of a key one at a time, in send order, while keys flow in parallel", async () => {
    const sender = await openSender({
      ...(await journal()),
      retryBackoff: { initial: 5, max: 20, factor: 2, jitter: 0 },
      maxAttempts: 100,
    })
    const KEYS = 20
    const PER_KEY = 25
    const busy = new Set<string>()
    let overlaps = 0
    let parallel = 0
    const done = new Map<string, number[]>()
    let calls = 0
    const handler = async (m: unknown): Promise<void> => {
      const { k, n } = m as { k: string; n: number }
      if (busy.has(k)) overlaps++
      busy.add(k)
      parallel = Math.max(parallel, busy.size)
      await new Promise((r) => setImmediate(r))
      busy.delete(k)
      // One attempt in five fails: the key waits for its retry.
      if (++calls % 5 === 0) throw new Error("try again")
      done.set(k, [...(done.get(k) ?? []), n])
    }
    for (let w = 0; w < 3; w++) await openWorker(sender.endpoint, { concurrency: 4, handler })
    const sends: Promise<string>[] = []
    for (let n = 0; n < PER_KEY; n++)
      for (let k = 0; k < KEYS; k++) sends.push(sender.send({ k: `k${k}`, n }, { key: `k${k}` }))
    await Promise.all(sends)
    await sender.drained(timeout(30_000))
    expect(overlaps).toBe(0)
    expect(parallel).toBeGreaterThan(1)
    const order = Array.from({ length: PER_KEY }, (_, n) => n)
    for (let k = 0; k < KEYS; k++) expect(done.get(`k${k}`)).toEqual(order)
    expect(sizes(sender)).toMatchObject({ keys: 0, parked: 0 })
  })

  it("does not dispatch a delayed message before its time; stats().scheduled counts it", async () => {
    const sender = await openSender({ ...(await journal()) })
    const handled: { at: number; n: number }[] = []
    await openWorker(sender.endpoint, {
      handler: (m) => void handled.push({ at: Date.now(), n: (m as { n: number }).n }),
    })
    const t0 = Date.now()
    await sender.send({ n: 1 }, { delay: 400 })
    await sender.send({ n: 2 }, { notBefore: t0 + 200 })
    await sender.send({ n: 3 })
    expect(sender.stats().scheduled).toBe(2)
    expect(sender.metrics()).toMatch(/^pirate_sender_scheduled 2$/m)
    await sender.drained(timeout())
    expect(handled.map((h) => h.n)).toEqual([3, 2, 1])
    expect((handled[1] as { at: number }).at).toBeGreaterThanOrEqual(t0 + 200)
    expect((handled[2] as { at: number }).at).toBeGreaterThanOrEqual(t0 + 400)
    expect(sender.stats().scheduled).toBe(0)
  })

  it("a delayed message joins its key when it falls due, behind the one in flight", async () => {
    const sender = await openSender({ ...(await journal()) })
    const events: string[] = []
    let inFlight = 0
    let maxInFlight = 0
    await openWorker(sender.endpoint, {
      concurrency: 4,
      handler: async (m) => {
        maxInFlight = Math.max(maxInFlight, ++inFlight)
        events.push(`start ${m as string}`)
        // "b" is still running when "a" falls due: "a" must wait for it.
        if (m === "b") await new Promise((r) => setTimeout(r, 500))
        events.push(`end ${m as string}`)
        inFlight--
      },
    })
    await sender.send("a", { key: "k", delay: 200 })
    await sender.send("b", { key: "k" })
    await sender.drained(timeout())
    expect(events).toEqual(["start b", "end b", "start a", "end a"])
    expect(maxInFlight).toBe(1)
  })

  it("cancel() removes a message not dispatched yet: delayed, ready, behind its key", async () => {
    const sender = await openSender({ ...(await journal()) })
    const later = await sender.send("later", { delay: 60_000 })
    const ready = await sender.send("ready")
    const head = await sender.send("head", { key: "k" })
    const behind = await sender.send("behind", { key: "k" })
    expect(sender.stats().scheduled).toBe(1)
    expect(await sender.cancel(later)).toBe(true)
    expect(await sender.cancel(later)).toBe(false)
    expect(await sender.cancel(ready)).toBe(true)
    expect(await sender.cancel("0000000000000000")).toBe(false)
    expect(sender.stats().scheduled).toBe(0)
    const handled: unknown[] = []
    // The key's head goes; the message behind it is parked, then cancelled before it goes.
    let release: () => void = () => {}
    const held = new Promise<void>((r) => (release = r))
    await openWorker(sender.endpoint, {
      concurrency: 2,
      handler: async (m) => {
        handled.push(m)
        if (m === "head") await held
      },
    })
    await expect.poll(() => sender.stats().inFlight, { timeout: 10_000 }).toBe(1)
    expect(await sender.cancel(behind)).toBe(true)
    expect(await sender.cancel(head)).toBe(false) // in flight
    release()
    await sender.drained(timeout())
    expect(handled).toEqual(["head"])
    // Nothing left behind by the cancelled ones: every internal structure is empty.
    expect(Object.entries(sizes(sender)).filter(([, n]) => n !== 0)).toEqual([])
  })

  it("dead-letters a message whose ttl ran out before it was dispatched, as expired", async () => {
    const sender = await openSender({ ...(await journal()) })
    const expired = once(sender, "message:expired", timeout())
    const id = await sender.send("stale", { ttl: 150 })
    const [event] = (await expired) as [{ id: string; attempts: number }]
    expect(event).toEqual({ id, attempts: 0 })
    expect(sender.stats()).toMatchObject({ expired: 1, dead: 1, ready: 0 })
    expect(sender.metrics()).toMatch(/^pirate_sender_expired_total 1$/m)
    const dead = await sender.deadLetters()
    expect(dead.map((d) => [d.id, d.lastError])).toEqual([[id, "expired"]])
    await sender.drained(timeout())
  })

  it("lets a message in flight when its ttl runs out finish: its ack counts", async () => {
    const sender = await openSender({ ...(await journal()) })
    await openWorker(sender.endpoint, {
      handler: async () => {
        await new Promise((r) => setTimeout(r, 400))
        return "ok"
      },
    })
    await sender.send("slow", { ttl: 150 })
    await sender.drained(timeout())
    expect(sender.stats()).toMatchObject({ acked: 1, expired: 0, dead: 0 })
  })

  it("a failed attempt after the ttl is not retried: expired", async () => {
    const sender = await openSender({
      ...(await journal()),
      retryBackoff: { initial: 10, max: 10, factor: 1, jitter: 0 },
    })
    let attempts = 0
    await openWorker(sender.endpoint, {
      handler: async () => {
        attempts++
        await new Promise((r) => setTimeout(r, 250))
        throw new Error("failed")
      },
    })
    await sender.send("x", { ttl: 100 })
    await sender.drained(timeout())
    expect(attempts).toBe(1)
    expect(sender.stats()).toMatchObject({ expired: 1, dead: 1, nacked: 1 })
  })

  it('keyOnDead "continue": a dead letter lets the next message of its key go', async () => {
    const sender = await openSender({ ...(await journal()), maxAttempts: 1 })
    const handled: string[] = []
    await openWorker(sender.endpoint, {
      concurrency: 4,
      handler: (m) => {
        handled.push(m as string)
        if (m === "a1") throw new Error("bad")
      },
    })
    await sender.send("a1", { key: "a" })
    await sender.send("a2", { key: "a" })
    await sender.drained(timeout())
    expect(handled).toEqual(["a1", "a2"])
    expect(sender.stats().dead).toBe(1)
  })

  it('keyOnDead "hold": the key waits until its dead letter is replayed', async () => {
    const sender = await openSender({ ...(await journal()), maxAttempts: 1, keyOnDead: "hold" })
    const handled: string[] = []
    let fail = true
    await openWorker(sender.endpoint, {
      concurrency: 4,
      handler: (m) => {
        handled.push(m as string)
        if (m === "a1" && fail) throw new Error("bad")
      },
    })
    const dead = once(sender, "message:dead", timeout())
    const a1 = await sender.send("a1", { key: "a" })
    await sender.send("a2", { key: "a" })
    await sender.send("b1", { key: "b" })
    await dead
    await expect.poll(() => handled.includes("b1"), { timeout: 10_000 }).toBe(true)
    expect(sender.stats()).toMatchObject({ ready: 1, inFlight: 0 }) // a2, parked
    expect(handled).not.toContain("a2")
    fail = false
    expect(await sender.replay([a1])).toEqual([a1])
    await sender.drained(timeout())
    expect(handled.filter((m) => m.startsWith("a"))).toEqual(["a1", "a1", "a2"])
  })
})

describe("cancel() of the backlog on disk", () => {
  it("removes a message waiting on disk, kept in memory or not; the pager skips it", async () => {
    // window 10: 10 in the window, the next 40 (4 windows) kept in memory too, the rest on disk only.
    const sender = await openSender({ journal: await tempDir("sched-backlog-"), window: 10 })
    const ids: string[] = []
    for (let i = 0; i < 100; i++) ids.push(await sender.send(i))
    expect(sender.stats().backlog).toBe(90)
    const kept = ids[30] as string
    const onDisk = ids[80] as string
    expect(await sender.cancel(kept)).toBe(true)
    expect(await sender.cancel(onDisk)).toBe(true)
    expect(await sender.cancel(onDisk)).toBe(false)
    expect(sender.stats().backlog).toBe(88)
    const handled: number[] = []
    await openWorker(sender.endpoint, {
      concurrency: 4,
      handler: (m) => void handled.push(m as number),
    })
    await sender.drained(timeout())
    expect(handled.sort((a, b) => a - b)).toEqual(
      Array.from({ length: 100 }, (_, i) => i).filter((i) => i !== 30 && i !== 80),
    )
    expect(await sender.cancel(ids[0] as string)).toBe(false) // done
    expect((await sender.journal.stats()).pending).toBe(0)
    expect(Object.entries(sizes(sender)).filter(([, n]) => n !== 0)).toEqual([])
  })
})

describe("scheduling: options", () => {
  it("refuses wrong scheduling options with a named error", async () => {
    const sender = await openSender()
    await expect(sender.send("x", { delay: -1 })).rejects.toThrow(RangeError)
    await expect(sender.send("x", { delay: 1, notBefore: Date.now() })).rejects.toThrow(
      /'delay' and 'notBefore'/,
    )
    await expect(sender.send("x", { ttl: 0 })).rejects.toThrow(/'ttl'/)
    await expect(sender.send("x", { ttl: 5, expiresAt: Date.now() })).rejects.toThrow(TypeError)
    await expect(sender.send("x", { priority: 10 })).rejects.toThrow(/'priority'.*0 to 9/)
    await expect(sender.send("x", { priority: 1.5 })).rejects.toThrow(RangeError)
    await expect(sender.send("x", { key: "" })).rejects.toThrow(/'key'/)
    await expect(sender.send("x", { key: "k".repeat(1025) })).rejects.toThrow(/1024 bytes/)
    await expect(sender.send("x", { notBefore: Number.NaN })).rejects.toThrow(/finite/)
    expect(sender.stats().sent).toBe(0)
  })

  it("keeps priority and key on a LevelJournal across a restart", async () => {
    const dir = await tempDir("sched-restart-")
    const first = await openSender({ journal: new LevelJournal(dir) })
    for (let i = 0; i < 30; i++) await first.send({ i }, { priority: i % 3 === 0 ? 9 : 1 })
    await first.close()
    const sender = await openSender({ journal: dir })
    const handled: number[] = []
    await openWorker(sender.endpoint, {
      concurrency: 1,
      handler: (m) => void handled.push((m as { i: number }).i),
    })
    await sender.drained(timeout())
    const high = handled.filter((i) => i % 3 === 0)
    expect(handled.slice(0, high.length)).toEqual(high)
  })
})
