/**
 * Adversarial tests of named queues: a `send()` that resolved is delivered at least once, to a
 * worker of its own queue, with bounded memory, whatever happens — sender SIGKILLs while a queue
 * nobody takes is set aside and read back, workers of a queue coming, going and dying, keys,
 * delays, cancels and replays of a queue nobody takes, a restart with a mixed backlog, and the
 * memory journal's documented limit.
 */
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer } from "zeromq"
import { encodeReady } from "../../lib/protocol.js"
import { type JobContext, type Sender, type Worker } from "../../patterns/index.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import { tempDir } from "../helpers/journal-files.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { forkFixture } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

const timeout = (ms = 15_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

/** A small seeded generator (mulberry32): each run of a test makes the same choices. */
function random(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Delivery {
  id: string
  q: string
  n: number
  ctxQueue: string
  attempt: number
}

/** A handler that records each delivery (yielding once, so that some are in flight). */
function recorder(seen: Delivery[]): (m: unknown, ctx: JobContext) => Promise<void> {
  return async (m, ctx) => {
    const { q, n } = m as { q: string; n: number }
    seen.push({ id: ctx.id, q, n, ctxQueue: ctx.queue, attempt: ctx.attempt })
    await new Promise((r) => setImmediate(r))
  }
}

/**
 * A worker that dies: a PPX/2 peer that announces `queues`, takes up to `credit` tasks, never acks
 * and drops its connection when `kill()` is called (no GOODBYE), as a SIGKILLed process would.
 */
async function rogue(
  endpoint: string,
  queues: string[],
  credit = 4,
): Promise<{ kill: () => void }> {
  const d = new Dealer({ linger: 0 })
  let closed = false
  const kill = (): void => {
    if (closed) return
    closed = true
    d.close()
  }
  onTestFinished(kill)
  d.connect(endpoint)
  await d.send(encodeReady({ version: 2, credit, heartbeatInterval: 60_000, liveness: 3, queues }))
  // Takes what comes (WELCOME, tasks, heartbeats) and answers nothing.
  void (async () => {
    try {
      for (;;) await d.receive()
    } catch {
      // closed
    }
  })()
  return { kill }
}

/** Sends `count` messages { q, n } to `q`, `batch` at a time; returns the ids in send order. */
async function produce(
  sender: Sender,
  q: string,
  count: number,
  batch: number,
  options: { key?: (n: number) => string; pause?: number } = {},
): Promise<string[]> {
  const ids: string[] = []
  for (let n = 0; n < count; n += batch) {
    const sends: Promise<string>[] = []
    for (let i = n; i < Math.min(count, n + batch); i++)
      sends.push(
        sender.send({ q, n: i }, options.key ? { queue: q, key: options.key(i) } : { queue: q }),
      )
    ids.push(...(await Promise.all(sends)))
    if (options.pause !== undefined) await sleep(options.pause)
  }
  return ids
}

/** Every internal size back to 0 but the named queues' states. */
function leftovers(sender: Sender): [string, number][] {
  return Object.entries(sender[internals]()).filter(([k, n]) => n !== 0 && k !== "namedQueues")
}

/** Each delivery went to a worker of its own queue. */
function expectOwnQueues(seen: Delivery[]): void {
  expect(seen.filter((d) => d.ctxQueue !== d.q)).toEqual([])
}

describe("named queues, adversarial", () => {
  it("SIGKILLs of the sender while a queue nobody takes is set aside and read back lose no resolved send", async () => {
    const journal = await tempDir("queues-adv-")
    const queues = ["a", "b", "c"]
    const TOTAL = 1500
    const BATCH = 20
    const rnd = random(14)
    /** Where each round is killed: a generator of its own, so that the churn does not move it. */
    const pick = random(41)
    const seen: Delivery[] = []
    let endpoint = "tcp://127.0.0.1:*"
    let from = 0
    /** n resolved in a batch the child had not reported yet when it died: sent again. */
    const resent = new Set<number>()
    /** n delivered before some kill: may come again. */
    const before = new Set<number>()
    for (let round = 0; round < 3; round++) {
      const child = forkFixture("queues-sender.ts", [
        JSON.stringify({
          bind: endpoint,
          journal,
          window: 10,
          from,
          to: TOTAL,
          batch: BATCH,
          queues,
          drain: false,
        }),
      ])
      const open = (await child.waitFor((m) => m["type"] === "open", 20_000)) as {
        endpoint: string
      }
      endpoint = open.endpoint
      const workerA = await openWorker(endpoint, { queues: ["a"], handler: recorder(seen) })
      // "b"'s workers come and go (closed or dying) while the child sends; "c" has none.
      let churning = true
      const churn = (async () => {
        while (churning) {
          if (rnd() < 0.5) {
            const w = await openWorker(endpoint, {
              queues: ["b"],
              closeTimeout: 0,
              handler: recorder(seen),
            })
            await sleep(20 + rnd() * 80)
            await w.close()
          } else {
            const r = await rogue(endpoint, ["b"], 3)
            await sleep(20 + rnd() * 80)
            r.kill()
          }
          await sleep(rnd() * 60)
        }
      })()
      const target = Math.min(TOTAL - BATCH, from + 100 + Math.floor(pick() * 250))
      try {
        await child.waitFor((m) => m["type"] === "sent" && (m["upTo"] as number) >= target, 20_000)
        await sleep(pick() * 50)
        await child.kill("SIGKILL")
      } finally {
        churning = false
        await churn
      }
      // Whatever this sender handed out has run by now (a handler may start after the kill).
      await workerA.close()
      for (const d of seen) before.add(d.n)
      const upTo = Math.max(
        from,
        ...child.messages.filter((m) => m["type"] === "sent").map((m) => m["upTo"] as number),
      )
      for (let n = upTo; n < upTo + BATCH; n++) resent.add(n)
      from = upTo
    }
    const last = forkFixture("queues-sender.ts", [
      JSON.stringify({
        bind: endpoint,
        journal,
        window: 10,
        from,
        to: TOTAL,
        batch: BATCH,
        queues,
        drain: true,
      }),
    ])
    await last.waitFor((m) => m["type"] === "open", 20_000)
    for (const q of queues) await openWorker(endpoint, { queues: [q], handler: recorder(seen) })
    const done = (await last.waitFor((m) => m["type"] === "drained", 30_000)) as {
      internals: Record<string, number>
      stats: { dead: number }
    }
    expect(done.stats.dead).toBe(0)
    expectOwnQueues(seen)
    expect(seen.filter((d) => d.q !== queues[d.n % 3])).toEqual([])
    const times = new Map<number, number>()
    for (const d of seen) times.set(d.n, (times.get(d.n) ?? 0) + 1)
    const missing = [...Array(TOTAL).keys()].filter((n) => !times.has(n))
    expect(missing).toEqual([])
    // Twice only for what ran before a kill (in flight, or acked without the ack written) or was
    // sent again by the restarted producer.
    const twice = [...times].filter(([n, k]) => k > 1 && !before.has(n) && !resent.has(n))
    expect(twice).toEqual([])
    expect(
      Object.entries(done.internals).filter(([k, n]) => n !== 0 && k !== "namedQueues"),
    ).toEqual([])
  }, 60_000)

  it("workers of several queues coming, going and dying while producers send: nothing lost, nothing stuck", async () => {
    const journal = await tempDir("queues-adv-")
    const sender = await openSender({ journal, window: 16, maxAttempts: 1000 })
    const queues = ["a", "b", "c"]
    const rnd = random(7)
    const seen: Delivery[] = []
    let producing = true
    const produced = Promise.all(
      queues.map((q) => produce(sender, q, 200, 10, { pause: 5 })),
    ).finally(() => (producing = false))
    const workers: Worker[] = []
    const rogues: { kill: () => void }[] = []
    const deadline = Date.now() + 4000
    while (producing || Date.now() < deadline - 2500) {
      const q = queues[Math.floor(rnd() * 3)] as string
      const pick = rnd()
      if (pick < 0.35)
        workers.push(
          await openWorker(sender.endpoint, {
            queues: rnd() < 0.5 ? [q] : queues.filter((x) => x !== q),
            concurrency: 2,
            prefetch: 2,
            closeTimeout: 0,
            handler: recorder(seen),
          }),
        )
      else if (pick < 0.6 && workers.length > 0)
        await workers.splice(Math.floor(rnd() * workers.length), 1)[0]?.close()
      else if (pick < 0.8) rogues.push(await rogue(sender.endpoint, [q], 2))
      else rogues.splice(Math.floor(rnd() * rogues.length), 1)[0]?.kill()
      await sleep(rnd() * 40)
      if (Date.now() > deadline + 10_000) break
    }
    const ids = await produced
    for (const r of rogues) r.kill()
    for (const w of workers) await w.close()
    // Every queue gets a worker again: the sender drains.
    for (const q of queues)
      await openWorker(sender.endpoint, { queues: [q], handler: recorder(seen) })
    await sender.drained(timeout())
    expect(sender.stats().dead).toBe(0)
    expectOwnQueues(seen)
    const got = new Set(seen.map((d) => d.id))
    for (const [i, q] of queues.entries()) {
      const lost = (ids[i] as string[]).filter((id) => !got.has(id))
      expect({ q, lost }).toEqual({ q, lost: [] })
    }
    await waitFor(() => expect(leftovers(sender)).toEqual([]))
  }, 30_000)

  it("keeps the order of each key while the workers of its queue come, go and die", async () => {
    const journal = await tempDir("queues-adv-")
    const sender = await openSender({ journal, window: 12, maxAttempts: 1000 })
    const rnd = random(3)
    const seen: Delivery[] = []
    const key = (n: number): string => `k${n % 4}`
    let producing = true
    const produced = Promise.all([
      produce(sender, "k", 240, 8, { key, pause: 10 }),
      produce(sender, "other", 60, 6, { pause: 20 }),
    ]).finally(() => (producing = false))
    await openWorker(sender.endpoint, { queues: ["other"], handler: recorder(seen) })
    while (producing) {
      if (rnd() < 0.6) {
        const w = await openWorker(sender.endpoint, {
          queues: ["k"],
          concurrency: 4,
          closeTimeout: 0,
          handler: recorder(seen),
        })
        await sleep(10 + rnd() * 60)
        await w.close()
      } else {
        const r = await rogue(sender.endpoint, ["k"], 4)
        await sleep(10 + rnd() * 60)
        r.kill()
      }
      await sleep(rnd() * 40)
    }
    await produced
    await openWorker(sender.endpoint, { queues: ["k"], concurrency: 4, handler: recorder(seen) })
    await sender.drained(timeout())
    expect(sender.stats().dead).toBe(0)
    expectOwnQueues(seen)
    const ofK = seen.filter((d) => d.q === "k")
    const missing = [...Array(240).keys()].filter((n) => !ofK.some((d) => d.n === n))
    const pending = await sender.journal.pending({ limit: 1000 })
    expect({ missing, pending: pending.length }).toEqual({ missing: [], pending: 0 })
    // Per key, each delivery is the same message again (a redelivery) or a later one.
    for (let k = 0; k < 4; k++) {
      const order = ofK.filter((d) => d.n % 4 === k).map((d) => d.n)
      const back = order.filter((n, i) => i > 0 && n < (order[i - 1] as number))
      expect({ k, back }).toEqual({ k, back: [] })
    }
    await waitFor(() => expect(leftovers(sender)).toEqual([]))
  }, 30_000)

  it("messages due later for a queue nobody takes never stall a served queue", async () => {
    const journal = await tempDir("queues-adv-")
    const sender = await openSender({ journal, window: 10 })
    const seenA: Delivery[] = []
    await openWorker(sender.endpoint, { queues: ["a"], handler: recorder(seenA) })
    const z: Promise<string>[] = []
    for (let n = 0; n < 40; n++) z.push(sender.send({ q: "z", n }, { queue: "z", delay: 50 }))
    const zIds = await Promise.all(z)
    // Past their due time: they are promoted while nobody takes "z".
    await sleep(300)
    const aIds = await produce(sender, "a", 60, 5)
    await waitFor(() => expect(seenA.length).toBeGreaterThanOrEqual(60))
    expect(new Set(seenA.map((d) => d.id))).toEqual(new Set(aIds))
    const seenZ: Delivery[] = []
    await openWorker(sender.endpoint, { queues: ["z"], handler: recorder(seenZ) })
    await sender.drained(timeout())
    expect(seenZ.map((d) => d.id).sort()).toEqual([...zIds].sort())
    await waitFor(() => expect(leftovers(sender)).toEqual([]))
  }, 20_000)

  // A scheduled message promoted while a backlog waits ahead of the paging cursor, with an id
  // past it, joins that backlog (where the pager sets it aside) instead of the window.
  it("messages due later for a queue nobody takes, sent while a served queue's backlog waits on disk, never stall it", async () => {
    const journal = await tempDir("queues-adv-")
    const sender = await openSender({ journal, window: 10 })
    let release: () => void = () => undefined
    const gate = new Promise<void>((r) => (release = r))
    const seenA: Delivery[] = []
    await openWorker(sender.endpoint, {
      queues: ["a"],
      handler: async (m, ctx) => {
        await gate
        await recorder(seenA)(m, ctx)
      },
    })
    // The window fills with "a" and the rest of "a" waits on disk; then "z" is sent, due soon.
    const aIds = await produce(sender, "a", 40, 10)
    const z: Promise<string>[] = []
    for (let n = 0; n < 30; n++) z.push(sender.send({ q: "z", n }, { queue: "z", delay: 30 }))
    const zIds = await Promise.all(z)
    await sleep(200)
    release()
    await waitFor(() => expect(seenA.length).toBeGreaterThanOrEqual(40))
    expect(new Set(seenA.map((d) => d.id))).toEqual(new Set(aIds))
    const seenZ: Delivery[] = []
    await openWorker(sender.endpoint, { queues: ["z"], handler: recorder(seenZ) })
    await sender.drained(timeout())
    expect(seenZ.map((d) => d.id).sort()).toEqual([...zIds].sort())
    await waitFor(() => expect(leftovers(sender)).toEqual([]))
  }, 20_000)

  it("a message due later, promoted into the window before a backlog forms, is not paged in a second time", async () => {
    const journal = await tempDir("queues-adv-")
    const sender = await openSender({ journal, window: 2 })
    const gates = [0, 1].map(() => {
      let release: () => void = () => undefined
      const done = new Promise<void>((r) => (release = r))
      return { done, release }
    })
    const seen: Delivery[] = []
    await openWorker(sender.endpoint, {
      concurrency: 4,
      handler: async (m, ctx) => {
        await recorder(seen)(m, ctx)
        const { n } = m as { n: number }
        if (n < 2) await gates[n]?.done
      },
    })
    const first = await sender.send({ q: "now", n: 0 })
    const later = await sender.send({ q: "later", n: 1 }, { delay: 20 })
    // Both in flight: the window is full, and the newest send in it is older than "later".
    await waitFor(() => expect(seen.map((d) => d.id)).toEqual([first, later]))
    const rest = await Promise.all([2, 3, 4, 5].map((n) => sender.send({ q: "now", n })))
    expect(sender.stats().backlog).toBe(4)
    gates[0]?.release()
    await waitFor(() => expect(seen.filter((d) => rest.includes(d.id))).toHaveLength(4))
    gates[1]?.release()
    await sender.drained(timeout())
    expect(seen.filter((d) => d.id === later)).toHaveLength(1)
  })

  it("cancels messages of a queue nobody takes, set aside or on disk; each other one comes once", async () => {
    const journal = await tempDir("queues-adv-")
    const sender = await openSender({ journal, window: 10 })
    // "a" is served but slow: the window fills with it, so later "b" sends stay ahead of the cursor.
    let release: () => void = () => undefined
    const gate = new Promise<void>((r) => (release = r))
    const seen: Delivery[] = []
    await openWorker(sender.endpoint, {
      queues: ["a"],
      concurrency: 1,
      prefetch: 1,
      handler: async (m, ctx) => {
        await gate
        await recorder(seen)(m, ctx)
      },
    })
    const early = await produce(sender, "b", 20, 10) // set aside as the pager passes them
    const aIds = await produce(sender, "a", 30, 10)
    const late = await produce(sender, "b", 20, 10) // behind "a" on disk
    const cancelled = [early[3], early[11], late[0], late[19]] as string[]
    for (const id of cancelled)
      expect({ id, ok: await sender.cancel(id) }).toEqual({ id, ok: true })
    for (const id of cancelled)
      expect({ id, ok: await sender.cancel(id) }).toEqual({ id, ok: false })
    release()
    await waitFor(() => expect(seen.filter((d) => d.q === "a")).toHaveLength(30))
    await openWorker(sender.endpoint, { queues: ["b"], handler: recorder(seen) })
    await sender.drained(timeout())
    const expected = [...early, ...aIds, ...late].filter((id) => !cancelled.includes(id))
    expect(seen.map((d) => d.id).sort()).toEqual(expected.sort())
    await waitFor(() => expect(leftovers(sender)).toEqual([]))
  }, 20_000)

  it("replayed dead letters of a queue nobody takes do not hold the window; each comes once when a worker does", async () => {
    const journal = await tempDir("queues-adv-")
    const sender = await openSender({ journal, window: 10, maxAttempts: 1 })
    const failing = await openWorker(sender.endpoint, {
      queues: ["b"],
      handler: () => {
        throw new Error("no")
      },
    })
    const dead = await produce(sender, "b", 25, 25)
    await waitFor(async () => expect(await sender.journal.dead()).toHaveLength(25))
    await failing.close()
    const seenA: Delivery[] = []
    await openWorker(sender.endpoint, { queues: ["a"], handler: recorder(seenA) })
    await waitFor(() => expect(sender.stats().queues["a"]?.workers).toBe(1))
    expect((await sender.replay(dead)).sort()).toEqual([...dead].sort())
    // Nobody takes "b": "a" must still flow.
    const aIds = await produce(sender, "a", 40, 10)
    await waitFor(() => expect(seenA.length).toBeGreaterThanOrEqual(40))
    expect(new Set(seenA.map((d) => d.id))).toEqual(new Set(aIds))
    const seenB: Delivery[] = []
    await openWorker(sender.endpoint, { queues: ["b"], handler: recorder(seenB) })
    await sender.drained(timeout())
    expect(seenB.map((d) => d.id).sort()).toEqual([...dead].sort())
    await waitFor(() => expect(leftovers(sender)).toEqual([]))
  }, 20_000)

  it.each([
    [["a", "b", "c"], "b"],
    [["default", "b", "c"], "c"],
    [["default", "b", "c"], "default"],
  ])(
    "a restart with a backlog of %j where only %s's worker connects: that queue drains fully",
    async (queues, served) => {
      const journal = await tempDir("queues-adv-")
      let sender = await openSender({ journal, window: 10 })
      const ids = new Map<string, string[]>(queues.map((q) => [q, []]))
      for (let n = 0; n < 90; n++) {
        const q = queues[n % 3] as string
        ids.get(q)?.push(await sender.send({ q, n }, q === "default" ? {} : { queue: q }))
      }
      await sender.close()
      sender = await openSender({ journal, window: 10 })
      const seen: Delivery[] = []
      await openWorker(sender.endpoint, { queues: [served], handler: recorder(seen) })
      await waitFor(() => expect(seen).toHaveLength(30), { timeout: 10_000 })
      expectOwnQueues(seen)
      expect(seen.map((d) => d.id)).toEqual(ids.get(served))
      for (const q of queues.filter((x) => x !== served))
        await openWorker(sender.endpoint, { queues: [q], handler: recorder(seen) })
      await sender.drained(timeout())
      expect(seen.map((d) => d.id).sort()).toEqual([...ids.values()].flat().sort())
    },
    20_000,
  )

  it("memory journal: a queue nobody takes fills the window; producers wait, nothing crashes or is lost", async () => {
    const sender = await openSender({ window: 10 })
    const pressure: string[] = []
    sender.on("backpressure", (e) => pressure.push(e.reason))
    const seenA: Delivery[] = []
    await openWorker(sender.endpoint, { queues: ["a"], handler: recorder(seenA) })
    const b: Promise<string>[] = []
    for (let n = 0; n < 15; n++) b.push(sender.send({ q: "b", n }, { queue: "b" }))
    const a: Promise<string>[] = []
    for (let n = 0; n < 5; n++) a.push(sender.send({ q: "a", n }, { queue: "a" }))
    // The documented limit: "b" holds the whole window; the rest of "b" and all of "a" wait.
    await waitFor(() => expect(sender.stats().waiting).toBe(10))
    expect(sender.stats().inWindow).toBe(10)
    expect(pressure).toEqual(["window"])
    expect(seenA).toHaveLength(0)
    const seenB: Delivery[] = []
    await openWorker(sender.endpoint, { queues: ["b"], handler: recorder(seenB) })
    const [bIds, aIds] = await Promise.all([Promise.all(b), Promise.all(a)])
    await sender.drained(timeout())
    expect(seenB.map((d) => d.id)).toEqual(bIds)
    expect(seenA.map((d) => d.id)).toEqual(aIds)
    expect(pressure).toEqual(["window", "resumed"])
    await waitFor(() => expect(leftovers(sender)).toEqual([]))
  })
})
