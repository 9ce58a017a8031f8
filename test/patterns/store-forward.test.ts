/**
 * Store and forward, end to end, with the sender's peak RSS checked against the issue's bound.
 * `npm test` runs this file on its own, after the others: a sender's RSS depends on when its
 * garbage collector gets the CPU, and with the other test files' processes on the same 2 cores it
 * was seen 30–60 MB higher than alone (a million offline sends: 165–173 MB alone, up to 226 MB
 * beside the chaos and crash suites).
 */
import { once } from "node:events"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { journalStats } from "../helpers/journal-files.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import type { Sender, SenderOptions, SenderStats } from "../../patterns/index.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { forkFixture, type Child } from "../helpers/processes.js"
import { checkSeqLogs } from "../helpers/seq-log.js"
import { waitFor } from "../helpers/wait.js"

const signal = (ms = 15_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

/** A message count from the environment (to run the big cases bigger or smaller), else `fallback`. */
function envCount(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1000 || n % 1000 !== 0)
    throw new RangeError(`${name} must be a multiple of 1000, got ${raw}`)
  return n
}

/** Offline sends per durability, and of the crash case (override: PIRATE_SF_N_OS and so on). */
const OFFLINE = {
  os: envCount("PIRATE_SF_N_OS", 1_000_000),
  fsync: envCount("PIRATE_SF_N_FSYNC", 200_000),
} as const
const CRASH = envCount("PIRATE_SF_N_CRASH", 200_000)
const RSS_LIMIT = 200 * 1024 * 1024
/** Time allowed for one phase (journaling n sends, or draining n): generous for a loaded CI box. */
const phaseMs = (n: number): number => 20_000 + n * 0.12

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-sf-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

type Report = Record<string, unknown> & {
  type: string
  resolved: number
  peakRss: number
  ms: number
  endpoint: string
  stats: SenderStats
  journal: { pending: number; dead: number }
  held: Record<string, number>
  backpressure: unknown[]
}

const nextReport = async (child: Child, types: string[], timeoutMs: number): Promise<Report> =>
  (await child.waitFor((m) => types.includes(m["type"] as string), timeoutMs)) as Report

/** Starts sf-sender.ts on `journal`; resolves once it is bound. */
async function startSender(
  journal: string,
  options: { durability?: "os" | "fsync"; count: number },
): Promise<{ child: Child; open: Report }> {
  // Compiled: the RSS measured is the sender's as users run it, without tsx's tooling.
  const child = forkFixture("sf-sender.ts", [journal, JSON.stringify(options)], { compiled: true })
  return { child, open: await nextReport(child, ["open"], 15_000) }
}

/** Starts sf-worker.ts processes, each logging the sequence numbers it handles to a file. */
function startWorkers(
  endpoint: string,
  dir: string,
  count = 2,
): { logs: string[]; children: Child[] } {
  const logs = Array.from({ length: count }, (_, i) => join(dir, `worker-${i}.log`))
  const children = logs.map((log) =>
    forkFixture("sf-worker.ts", [endpoint, log, JSON.stringify({ concurrency: 8 })]),
  )
  return { logs, children }
}

/** Closes the workers (their logs are complete once they report "closed"); resolves with the count handled. */
async function closeWorkers(children: Child[]): Promise<number> {
  const closed = await Promise.all(
    children.map((c) => {
      c.process.send({ type: "close" })
      return c.waitFor((m) => m["type"] === "closed", 15_000)
    }),
  )
  return closed.reduce((sum, m) => sum + (m["handled"] as number), 0)
}

/** Closes the sender fixture, then reads the journal it leaves. */
async function closeAndReadJournal(
  child: Child,
  dir: string,
): Promise<{ pending: number; dead: number }> {
  child.process.send({ type: "close" })
  await child.waitFor((m) => m["type"] === "closed", 15_000)
  await once(child.process, "exit")
  return journalStats(dir)
}

/** `promise`, or a failure naming `what` (and the state `explain()` gives) after `ms`. */
async function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  explain: () => unknown = () => "",
): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: not within ${ms} ms ${JSON.stringify(explain())}`)),
          ms,
        )
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Every internal map and queue of the sender is empty (nothing pending, nobody waiting). */
function expectNothingHeld(sender: Sender): void {
  const held = Object.entries(sender[internals]()).filter(([, size]) => size !== 0)
  expect(Object.fromEntries(held), "internal structures still holding something").toEqual({})
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`

describe("store and forward, end to end", () => {
  for (const durability of ["os", "fsync"] as const) {
    const n = OFFLINE[durability]
    it(
      `journals ${n} sends with no worker in bounded memory, then delivers them all in order (${durability})`,
      async () => {
        const dir = await tempDir()
        const journal = join(dir, "journal")
        const t0 = performance.now()
        const { child, open } = await startSender(journal, { durability, count: n })

        // Offline: no worker anywhere, every send must resolve (none waits for the window).
        const sent = await nextReport(child, ["all-sent", "stalled"], phaseMs(n))
        expect(sent, `the sends stalled: ${JSON.stringify(sent)}`).toMatchObject({
          type: "all-sent",
          resolved: n,
        })
        expect(sent.stats).toMatchObject({ sent: n, waiting: 0, workers: 0 })
        expect(sent.stats.backlog, "what does not fit in the window waits on disk").toBe(n - 10_000)
        expect(sent.stats.backlogBytes).toBe((n - 10_000) * 256)
        expect(sent.peakRss, `peak RSS ${mb(sent.peakRss)}`).toBeLessThan(RSS_LIMIT)
        const t1 = performance.now()

        // Forward: two workers drain the journal.
        const { logs, children } = startWorkers(open.endpoint, dir)
        const drained = await nextReport(child, ["drained"], phaseMs(n))
        const t2 = performance.now()
        expect(drained.stats).toMatchObject({
          ready: 0,
          inFlight: 0,
          delayed: 0,
          backlog: 0,
          waiting: 0,
          acked: n,
          redelivered: 0,
          workersLost: 0,
        })
        expect(drained.journal).toEqual({ pending: 0, dead: 0, scheduled: 0 })
        expect(drained.held, "internal structures still holding something").toEqual({})
        expect(drained.backpressure, "no producer ever waited").toEqual([])
        expect(await closeWorkers(children)).toBe(n)
        const report = await checkSeqLogs(logs, n)
        expect(report).toMatchObject({
          handled: n,
          distinct: n,
          duplicates: 0,
          missing: 0,
          outOfRange: 0,
          orderBreaks: [],
          sessions: 2,
        })
        expect(await closeAndReadJournal(child, journal)).toEqual({
          pending: 0,
          dead: 0,
          scheduled: 0,
        })
        console.log(
          `store and forward (${durability}): ${n} offline sends in ${sent.ms} ms (peak RSS ${mb(sent.peakRss)}, ${mb(drained.peakRss)} while draining), drained in ${Math.round(t2 - t1)} ms, ${Math.round(performance.now() - t0)} ms in all`,
        )
      },
      2 * phaseMs(n) + 30_000,
    )
  }

  it(
    `delivers every send that resolved before a SIGKILL halfway through ${CRASH} offline sends`,
    async () => {
      const n = CRASH
      const dir = await tempDir()
      const journal = join(dir, "journal")
      const t0 = performance.now()
      const first = await startSender(journal, { durability: "os", count: n })
      const half = await first.child.waitFor(
        (m) =>
          m["type"] === "stalled" || (m["type"] === "sent" && (m["resolved"] as number) >= n / 2),
        phaseMs(n),
      )
      expect(half, `the sends stalled: ${JSON.stringify(half)}`).toMatchObject({ type: "sent" })
      const resolved = half["resolved"] as number
      await first.child.kill("SIGKILL") // sends after `resolved` are in flight: kept or not

      const second = await startSender(journal, { count: 0 })
      const recovered = second.open.stats.ready + second.open.stats.backlog
      expect(recovered).toBeGreaterThanOrEqual(resolved)
      expect(recovered).toBeLessThanOrEqual(n)
      const { logs, children } = startWorkers(second.open.endpoint, dir)
      const drained = await nextReport(second.child, ["drained"], phaseMs(n))
      expect(drained.stats).toMatchObject({ backlog: 0, acked: recovered, redelivered: 0 })
      expect(drained.journal).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expect(drained.held, "internal structures still holding something").toEqual({})
      expect(await closeWorkers(children)).toBe(recovered)
      // No worker saw the first sender, so nothing can come twice.
      const report = await checkSeqLogs(logs, n, resolved)
      expect(report).toMatchObject({
        handled: recovered,
        duplicates: 0,
        missing: 0,
        outOfRange: 0,
        orderBreaks: [],
      })
      expect(await closeAndReadJournal(second.child, journal)).toEqual({
        pending: 0,
        dead: 0,
        scheduled: 0,
      })
      console.log(
        `store and forward, sender SIGKILLed: ${resolved} sends had resolved, ${recovered} recovered, all delivered; ${Math.round(performance.now() - t0)} ms in all`,
      )
    },
    2 * phaseMs(CRASH) + 30_000,
  )
})

interface BackpressureCase {
  reason: "maxBacklog" | "maxBacklogBytes"
  options: Partial<SenderOptions>
  payload: (n: number) => unknown
  /** Messages that fit in the backlog. */
  spill: number
}

describe("store and forward, in process", () => {
  const window = 100
  const cases: BackpressureCase[] = [
    { reason: "maxBacklog", options: { maxBacklog: 500 }, payload: (n) => ({ n }), spill: 500 },
    {
      reason: "maxBacklogBytes",
      options: { maxBacklogBytes: 50 * 1000, codec: "raw" },
      payload: (n) => Buffer.alloc(1000, n % 256),
      spill: 50,
    },
  ]
  for (const c of cases) {
    it(`makes send() wait at ${c.reason}, says so, and resumes when a worker drains`, async () => {
      const dir = await tempDir()
      const sender = await openSender({ journal: dir, window, ...c.options })
      const events: unknown[] = []
      sender.on("backpressure", (e) => events.push(e))
      const total = window + c.spill + 100
      // Awaited 50 at a time: a burst of spills larger than the window would wait for its own
      // writes first (reason "window"), which is not what this test is about.
      const ids: string[] = []
      for (let n = 0; n < window + c.spill; n += 50) {
        const batch = Array.from({ length: 50 }, (_, i) => sender.send(c.payload(n + i)))
        ids.push(...(await within(Promise.all(batch), 5000, `sends ${n}…`, () => sender.stats())))
      }
      expect(events, "no waiting below the budget").toEqual([])
      expect(sender.stats()).toMatchObject({ waiting: 0, backlog: c.spill })
      if (c.reason === "maxBacklogBytes") expect(sender.stats().backlogBytes).toBe(c.spill * 1000)

      let resolved = 0
      const blocked = Array.from({ length: 100 }, (_, i) =>
        sender.send(c.payload(window + c.spill + i)).then((id) => {
          resolved++
          return id
        }),
      )
      // Sends rejected by close() when the test fails are no unhandled rejections.
      for (const p of blocked) p.catch(() => undefined)
      await waitFor(() =>
        expect(events).toEqual([{ waiting: 1, backlog: c.spill, reason: c.reason }]),
      )
      expect(sender.stats()).toMatchObject({ waiting: 100, backlog: c.spill })

      const order: string[] = []
      await openWorker(sender.endpoint, {
        concurrency: 4,
        codec: c.options.codec ?? "msgpack",
        handler: (_p, ctx) => {
          order.push(ctx.id)
          return "" // a reply both codecs encode
        },
      })
      expect(resolved, "nothing resolved while the budget was full").toBe(0)
      ids.push(
        ...(await within(Promise.all(blocked), 10_000, "the waiting sends", () => sender.stats())),
      )
      await sender.drained(signal())
      expect(order, "delivered in send order").toEqual(ids)
      expect(events).toMatchObject([{ reason: c.reason }, { waiting: 0, reason: "resumed" }])
      expect(sender.stats()).toMatchObject({
        waiting: 0,
        backlog: 0,
        backlogBytes: 0,
        acked: total,
      })
      expect(await sender.journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expectNothingHeld(sender)
    }, 20_000)
  }

  it("bounds a sender without journal by its window: send() and request() wait, request() until its timeout", async () => {
    const sender = await openSender({ window: 10 })
    const events: unknown[] = []
    sender.on("backpressure", (e) => events.push(e))
    const ids = await Promise.all(Array.from({ length: 10 }, (_, n) => sender.send({ n })))

    const t0 = performance.now()
    // The signal is only a fuse: the timeout must fire first.
    const err = await sender
      .request({ n: "late" }, { timeout: 500, signal: AbortSignal.timeout(5000) })
      .catch((e: unknown) => e)
    const elapsed = performance.now() - t0
    expect(err).toMatchObject({ code: "PIRATE_TIMEOUT" })
    expect(elapsed).toBeGreaterThanOrEqual(450)
    expect(elapsed, "about the timeout (slack for a loaded machine)").toBeLessThan(2500)
    expect(events[0]).toEqual({ waiting: 1, backlog: 0, reason: "window" })
    expect(sender.stats()).toMatchObject({ waiting: 0, sent: 10 })

    const controller = new AbortController()
    const waitingSend = sender.send({ n: "aborted" }, { signal: controller.signal })
    expect(sender.stats().waiting).toBe(1)
    controller.abort()
    await expect(waitingSend).rejects.toMatchObject({ code: "PIRATE_ABORTED" })
    expect(sender.stats().waiting).toBe(0)

    const got: unknown[] = []
    await openWorker(sender.endpoint, { handler: (p, ctx) => void got.push([p, ctx.id]) })
    await sender.drained(signal())
    expect(got).toEqual(ids.map((id, n) => [{ n }, id]))
    expect(events.at(-1)).toMatchObject({ waiting: 0, reason: "resumed" })
    expectNothingHeld(sender)
  }, 10_000)

  it("emits drained every time the sender becomes drained, with only a listener", async () => {
    const sender = await openSender({ journal: await tempDir() })
    let drainedEvents = 0
    sender.on("drained", () => drainedEvents++)
    const got: unknown[] = []
    await openWorker(sender.endpoint, { handler: (p) => void got.push(p) })

    const first = once(sender, "drained")
    await Promise.all([1, 2, 3].map((n) => sender.send({ n })))
    await within(first, 5000, "the first drained event", () => sender.stats())
    expect(drainedEvents).toBe(1)
    const second = once(sender, "drained")
    await sender.send({ n: 4 })
    await within(second, 5000, "the second drained event", () => sender.stats())
    expect(drainedEvents).toBe(2)
    expect(got).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }])
    expectNothingHeld(sender)

    await sender.close()
    expect(sender.stats()).toMatchObject({ sent: 4, acked: 4, ready: 0, inFlight: 0, backlog: 0 })
    expect(drainedEvents).toBe(2)
  }, 10_000)

  it("rejects drained() with PIRATE_CLOSED when the sender closes with messages pending", async () => {
    const dir = await tempDir()
    const sender: Sender = await openSender({ journal: dir })
    await sender.send({ n: 1 })
    await sender.send({ n: 2 })
    const pending = sender.drained()
    const controller = new AbortController()
    const given = sender.drained({ signal: controller.signal })
    controller.abort()
    await expect(given).rejects.toMatchObject({ code: "PIRATE_ABORTED" })
    expect(
      sender[internals]()["drainedWaiters"],
      "one waiter left: the drained() not aborted",
    ).toBe(1)

    await sender.close()
    await expect(pending).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    expect(sender.stats(), "final counters after close()").toMatchObject({
      sent: 2,
      acked: 0,
      waiting: 0,
    })
    // The two messages stay in the journal for the next open.
    const reopened = await openSender({ journal: dir })
    expect(reopened.stats().ready + reopened.stats().backlog).toBe(2)
  }, 10_000)

  it("rejects send() with an already-aborted signal, journaling and delivering nothing", async () => {
    const dir = await tempDir()
    const sender = await openSender({ journal: dir })
    const got: unknown[] = []
    await openWorker(sender.endpoint, { handler: (p) => void got.push(p) })

    const reason = new Error("the caller gave up")
    await expect(
      sender.send({ n: "aborted" }, { signal: AbortSignal.abort(reason) }),
    ).rejects.toMatchObject({ code: "PIRATE_ABORTED", cause: reason })
    expect(sender.stats()).toMatchObject({ sent: 0, waiting: 0 })
    expect(await sender.journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })

    await sender.send({ n: "kept" })
    await sender.drained(signal())
    expect(got).toEqual([{ n: "kept" }])
    expect(sender.stats()).toMatchObject({ sent: 1, acked: 1 })
    expectNothingHeld(sender)
  }, 10_000)

  it("rejects request() with an already-aborted signal with PIRATE_ABORTED, sending nothing", async () => {
    const sender = await openSender({ window: 10 })
    const got: unknown[] = []
    await openWorker(sender.endpoint, { handler: (p) => void got.push(p) })
    const reason = new Error("the caller gave up")
    await expect(
      sender.request({ n: "aborted" }, { signal: AbortSignal.abort(reason) }),
    ).rejects.toMatchObject({ code: "PIRATE_ABORTED", cause: reason })
    expect(await sender.request({ n: "answered" }, signal())).toBeUndefined()
    expect(got).toEqual([{ n: "answered" }])
    expectNothingHeld(sender)
  }, 10_000)
})
