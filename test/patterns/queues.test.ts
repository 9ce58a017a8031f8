/**
 * Named queues on one sender: workers take the queues they name, round robin across them; a
 * queue nobody takes waits (durably, on disk with a persistent journal) without holding the
 * window against the others; per-queue stats and dead letters.
 */
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer } from "zeromq"
import { decodeWelcome, encodeReady } from "../../lib/protocol.js"
import { Sender, type JobContext } from "../../patterns/index.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import { tempDir } from "../helpers/journal-files.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { waitFor } from "../helpers/wait.js"

const timeout = (ms = 15_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

interface Seen {
  q: string
  n: number
  ctxQueue: string
}

/** A handler that records what it got, and from which queue. */
function recorder(seen: Seen[]): (m: unknown, ctx: JobContext) => void {
  return (m, ctx) => {
    const { q, n } = m as { q: string; n: number }
    seen.push({ q, n, ctxQueue: ctx.queue })
  }
}

describe("named queues", () => {
  it("workers get only the queues they take; the other queue's messages wait and survive a restart", async () => {
    const journal = await tempDir("queues-")
    let sender = await openSender({ journal })
    const sends: Promise<string>[] = []
    for (let n = 0; n < 30; n++) {
      sends.push(sender.send({ q: "a", n }, { queue: "a" }))
      sends.push(sender.send({ q: "b", n }, { queue: "b" }))
    }
    await Promise.all(sends)
    const seenA: Seen[] = []
    const workerA = await openWorker(sender.endpoint, {
      queues: ["a"],
      handler: recorder(seenA),
    })
    await waitFor(() => expect(seenA).toHaveLength(30))
    expect(seenA.every((s) => s.q === "a" && s.ctxQueue === "a")).toBe(true)
    expect(seenA.map((s) => s.n)).toEqual([...Array(30).keys()])
    // The last ack may still be on its way.
    await waitFor(() => expect(sender.stats().acked).toBe(30))
    const stats = sender.stats()
    expect(stats.queues["a"]).toMatchObject({ sent: 30, acked: 30, workers: 1, ready: 0 })
    expect(stats.queues["b"]).toMatchObject({ sent: 30, acked: 0, workers: 0, inFlight: 0 })
    // "b" waits on disk, not in the window.
    expect(stats.queues["b"]?.inWindow).toBe(0)
    expect(stats.queues["b"]?.backlog).toBe(30)
    expect(sender.stats({ queue: "b" })).toEqual(stats.queues["b"])
    expect(sender.stats({ queue: "never" })).toMatchObject({ sent: 0, ready: 0, workers: 0 })
    await workerA.close()
    await sender.close()

    sender = await openSender({ journal })
    const seenB: Seen[] = []
    await openWorker(sender.endpoint, { queues: ["b"], handler: recorder(seenB) })
    await sender.drained(timeout())
    expect(seenB.map((s) => `${s.q}${s.n}`)).toEqual([...Array(30).keys()].map((n) => `b${n}`))
    expect(seenB.every((s) => s.ctxQueue === "b")).toBe(true)
    await waitFor(async () => expect(await sender.journal.stats()).toMatchObject({ pending: 0 }))
  })

  it("a queue nobody takes does not hold the window against a queue that is served", async () => {
    const journal = await tempDir("queues-")
    const sender = await openSender({ journal, window: 10 })
    const ids = await Promise.all(
      [...Array(50).keys()].map((n) => sender.send({ q: "b", n }, { queue: "b" })),
    )
    await Promise.all([...Array(20).keys()].map((n) => sender.send({ q: "a", n }, { queue: "a" })))
    const seenA: Seen[] = []
    await openWorker(sender.endpoint, { queues: ["a"], handler: recorder(seenA) })
    await waitFor(() => expect(seenA).toHaveLength(20))
    expect(sender.stats().queues["b"]).toMatchObject({ acked: 0, backlog: 50 })
    expect(sender.stats().inWindow).toBeLessThanOrEqual(10)
    // A message set aside can be cancelled; the others come back, in send order, once a worker
    // takes their queue.
    expect(await sender.cancel(ids[7] as string)).toBe(true)
    const seenB: Seen[] = []
    await openWorker(sender.endpoint, { queues: ["b"], concurrency: 1, handler: recorder(seenB) })
    await sender.drained(timeout())
    const expected = [...Array(50).keys()].filter((n) => n !== 7)
    expect(seenB.map((s) => s.n)).toEqual(expected)
    expect(seenA).toHaveLength(20)
    const left = Object.entries(sender[internals]()).filter(([, n]) => n !== 0)
    expect(left).toEqual([["namedQueues", 2]])
  })

  it.each([
    ["before", "sent before its worker came (they wait on disk first)"],
    ["after", "sent while its worker is there (the first ones go straight to the window)"],
  ])(
    "the waiting messages of a queue whose last worker left give the window back: %s",
    async (when) => {
      const journal = await tempDir("queues-")
      const sender = await openSender({
        journal,
        window: 10,
        retryBackoff: { initial: 10, max: 10, factor: 1, jitter: 0 },
      })
      const sendB = (): Promise<string[]> =>
        Promise.all([...Array(30).keys()].map((n) => sender.send({ q: "b", n }, { queue: "b" })))
      if (when === "before") await sendB()
      let release: () => void = () => undefined
      const gate = new Promise<void>((resolve) => (release = resolve))
      const started: number[] = []
      const workerB = await openWorker(sender.endpoint, {
        queues: ["b"],
        concurrency: 2,
        closeTimeout: 0,
        handler: async (m) => {
          started.push((m as { n: number }).n)
          await gate
          throw new Error("gave up")
        },
      })
      if (when === "after") {
        await waitFor(() => expect(sender.stats().queues["b"]?.workers).toBe(1))
        await sendB()
      }
      // The window fills with "b": two in flight, the rest ready behind them.
      await waitFor(() => expect(started).toHaveLength(2))
      await waitFor(() => expect(sender.stats().inWindow).toBe(10))
      release()
      await workerB.close()
      await waitFor(() => expect(sender.stats().queues["b"]?.inWindow).toBe(0))
      await Promise.all([...Array(5).keys()].map((n) => sender.send({ q: "a", n }, { queue: "a" })))
      const seenA: Seen[] = []
      await openWorker(sender.endpoint, { queues: ["a"], handler: recorder(seenA) })
      await waitFor(() => expect(seenA).toHaveLength(5))
      expect(sender.stats().queues["b"]).toMatchObject({ backlog: 30, acked: 0 })
      // Every "b" comes back, each once, the two that failed with their attempts.
      const seenB: Seen[] = []
      const attempts = new Map<number, number>()
      await openWorker(sender.endpoint, {
        queues: ["b"],
        handler: (m, ctx) => {
          recorder(seenB)(m, ctx)
          attempts.set((m as { n: number }).n, ctx.attempt)
        },
      })
      await sender.drained(timeout())
      expect(seenB.map((s) => s.n).sort((x, y) => x - y)).toEqual([...Array(30).keys()])
      for (const n of started) expect(attempts.get(n)).toBe(2)
    },
  )

  it("a worker that takes several queues is served round robin across those with messages", async () => {
    const sender = await openSender()
    for (let n = 0; n < 10; n++) await sender.send({ q: "a", n }, { queue: "a" })
    for (let n = 0; n < 10; n++) await sender.send({ q: "b", n }, { queue: "b" })
    for (let n = 0; n < 4; n++) await sender.send({ q: "c", n }, { queue: "c" })
    const seen: Seen[] = []
    await openWorker(sender.endpoint, {
      queues: ["a", "b"],
      concurrency: 1,
      prefetch: 1,
      handler: recorder(seen),
    })
    await waitFor(() => expect(seen).toHaveLength(20))
    expect(seen.map((s) => s.q).join("")).toBe("ab".repeat(10))
    expect(sender.stats().queues["c"]).toMatchObject({ ready: 4, workers: 0 })
    expect(sender.workers()[0]?.queues).toEqual(["a", "b"])
  })

  it("plain PPP workers and workers without queues take the default queue only", async () => {
    const sender = await openSender()
    await sender.send({ q: "default", n: 0 })
    await sender.send({ q: "x", n: 0 }, { queue: "x" })
    await sender.send({ q: "default", n: 1 }, { queue: "default" })
    const seenPpp: Seen[] = []
    const seenPpx: Seen[] = []
    await openWorker(sender.endpoint, { protocol: "ppp", handler: recorder(seenPpp) })
    await openWorker(sender.endpoint, { handler: recorder(seenPpx) })
    await waitFor(() => expect(seenPpp.length + seenPpx.length).toBe(2))
    expect(
      [...seenPpp, ...seenPpx].every((s) => s.q === "default" && s.ctxQueue === "default"),
    ).toBe(true)
    expect(sender.stats().queues["x"]).toMatchObject({ ready: 1, workers: 0 })
    // The last ack may still be on its way.
    await waitFor(() =>
      expect(sender.stats().queues["default"]).toMatchObject({ acked: 2, workers: 2 }),
    )
  })

  it("counts per queue and keeps the queue of a dead letter; replay sends it to its queue again", async () => {
    const sender = await openSender({ journal: await tempDir("queues-"), maxAttempts: 1 })
    let fail = true
    const seen: Seen[] = []
    await openWorker(sender.endpoint, {
      queues: ["x"],
      handler: (m, ctx) => {
        if (fail) throw new Error("no")
        recorder(seen)(m, ctx)
      },
    })
    const id = await sender.send({ q: "x", n: 1 }, { queue: "x" })
    await waitFor(() => expect(sender.stats().dead).toBe(1))
    expect(sender.stats({ queue: "x" })).toMatchObject({ sent: 1, nacked: 1, deadLettered: 1 })
    const [letter] = await waitFor(async () => {
      const dead = await sender.journal.dead()
      expect(dead).toHaveLength(1)
      return dead
    })
    expect(letter).toMatchObject({ id, queue: "x", lastError: "no" })
    fail = false
    expect(await sender.replay([id])).toEqual([id])
    await sender.drained(timeout())
    expect(seen).toEqual([{ q: "x", n: 1, ctxQueue: "x" }])
  })

  it("takes the queues of a READY at PPX/2 only: a PPX/1 worker gets the default queue", async () => {
    const sender = await openSender()
    const dealers: Dealer[] = []
    onTestFinished(() => dealers.forEach((d) => d.close()))
    for (const version of [1, 2]) {
      const d = new Dealer({ linger: 0 })
      dealers.push(d)
      d.connect(sender.endpoint)
      const hello = { credit: 4, heartbeatInterval: 60_000, liveness: 3, queues: ["r"] }
      await d.send(encodeReady({ version, ...hello }))
      const [, welcome] = await d.receive()
      expect(decodeWelcome(welcome)).toMatchObject({ version })
    }
    await waitFor(() => expect(sender.workers()).toHaveLength(2))
    expect(
      sender
        .workers()
        .map((w) => w.queues)
        .sort(),
    ).toEqual([["default"], ["r"]])
  })

  it("forgets idle queues: a sender fed ever new queue names keeps bounded memory", async () => {
    const sender = await openSender()
    for (let round = 0; round < 3; round++) {
      const ids = await Promise.all(
        [...Array(1500).keys()].map((n) => sender.send(n, { queue: `q${round}-${n}` })),
      )
      expect(sender[internals]()["namedQueues"]).toBeGreaterThanOrEqual(1500)
      for (const id of ids) expect(await sender.cancel(id)).toBe(true)
    }
    // The states of cancelled queues' are swept as new names come: never all 4 500.
    expect(sender[internals]()["namedQueues"]).toBeLessThanOrEqual(3000)
    await sender.send(0, { queue: "last" })
    expect(Object.keys(sender.stats().queues).length).toBeLessThanOrEqual(3002)
    expect(sender.stats().queues["last"]).toMatchObject({ sent: 1, ready: 1 })
  })

  it("refuses bad queue names where they are given", async () => {
    const sender = new Sender({ bind: "tcp://127.0.0.1:*" })
    await sender.open()
    try {
      await expect(sender.send(1, { queue: "" })).rejects.toThrow(TypeError)
      await expect(sender.send(1, { queue: "q".repeat(256) })).rejects.toThrow(RangeError)
      await expect(sender.send(1, { queue: 5 as unknown as string })).rejects.toThrow(/'queue'/)
      expect(() => sender.stats({ queue: "" })).toThrow(TypeError)
    } finally {
      await sender.close()
    }
    const handler = (): void => undefined
    await expect(openWorker("tcp://127.0.0.1:1", { queues: [], handler })).rejects.toThrow(
      /'queues'/,
    )
    await expect(openWorker("tcp://127.0.0.1:1", { queues: ["a", "a"], handler })).rejects.toThrow(
      /twice/,
    )
    await expect(
      openWorker("tcp://127.0.0.1:1", { queues: ["a"], protocol: "ppp", handler }),
    ).rejects.toThrow(/plain PPP worker/)
  })
})
