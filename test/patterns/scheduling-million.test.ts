/**
 * A million messages delayed by an hour: they wait in the journal's scheduled store, not in
 * memory, so the sender's peak RSS stays under 200 MB; a restart finds them all, still scheduled,
 * and hands none to a worker before its time.
 *
 * Like store-forward.test.ts, this file is meant to run on its own (`npx vitest run
 * test/patterns/scheduling-million.test.ts`): an RSS measured beside other test files' processes
 * on the same cores is tens of MB higher than alone. PIRATE_SCHED_N (a multiple of 1000) runs it
 * smaller or bigger.
 */
import { once } from "node:events"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { Worker, type SenderStats } from "../../patterns/index.js"
import { tempDir } from "../helpers/journal-files.js"
import { forkFixture, type Child } from "../helpers/processes.js"

const N = count("PIRATE_SCHED_N", 1_000_000)
const HOUR = 3_600_000
const RSS_LIMIT = 200 * 1024 * 1024
/** How long a connected worker must see nothing. */
const QUIET_MS = 1000
/** Time allowed for journaling n scheduled sends: generous for a loaded machine. */
const SEND_MS = 30_000 + N * 0.15

function count(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1000 || n % 1000 !== 0)
    throw new RangeError(`${name} must be a multiple of 1000, got ${raw}`)
  return n
}

type Report = Record<string, unknown> & { stats: SenderStats; peakRss: number; endpoint: string }

/** Starts sched-million.ts (compiled: the RSS is the sender's as users run it, without tsx). */
async function start(journal: string, options: object): Promise<{ child: Child; open: Report }> {
  const child = forkFixture("sched-million.ts", [journal, JSON.stringify(options)], {
    compiled: true,
  })
  const open = (await child.waitFor((m) => m["type"] === "open", 20_000)) as Report
  return { child, open }
}

async function close(child: Child): Promise<void> {
  child.process.send({ type: "close" })
  await child.waitFor((m) => m["type"] === "closed", 20_000)
  await once(child.process, "exit")
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`

describe("a million delayed messages", () => {
  it(
    `keeps ${N} messages delayed by an hour in bounded memory, and across a restart`,
    async () => {
      const t0 = performance.now()
      const dir = await tempDir("sched-million-")
      const journal = join(dir, "journal")

      const first = await start(journal, { count: N, delay: HOUR })
      const sent = (await first.child.waitFor(
        (m) => m["type"] === "all-sent" || m["type"] === "stalled",
        SEND_MS,
      )) as Report
      expect(sent, `the sends stalled: ${JSON.stringify(sent)}`).toMatchObject({
        type: "all-sent",
        resolved: N,
      })
      expect(sent.stats).toMatchObject({
        scheduled: N,
        sent: N,
        ready: 0,
        inFlight: 0,
        waiting: 0,
      })
      expect(sent.stats.inWindow, "scheduled messages are not held in memory").toBeLessThan(N / 10)
      expect(sent.peakRss, `peak RSS ${mb(sent.peakRss)}`).toBeLessThan(RSS_LIMIT)
      await close(first.child)
      const t1 = performance.now()

      // Restart: all still scheduled, and none goes to a worker that is there to take it.
      const second = await start(journal, {})
      expect(second.open.stats).toMatchObject({ scheduled: N, ready: 0, backlog: 0, inFlight: 0 })
      const handled: unknown[] = []
      const worker = new Worker({
        connect: second.open.endpoint,
        concurrency: 8,
        codec: "raw",
        heartbeatInterval: 100,
        handler: (p) => void handled.push(p),
      })
      onTestFinished(() => worker.close())
      const ready = once(worker, "sender:ready", { signal: AbortSignal.timeout(10_000) })
      await worker.open()
      await ready
      // Nothing to await here: this is a check that nothing happens, for a while.
      await new Promise((r) => setTimeout(r, QUIET_MS))
      second.child.process.send({ type: "stats" })
      const after = (await second.child.waitFor((m) => m["type"] === "stats", 10_000)) as Report
      expect(handled).toHaveLength(0)
      expect(after.stats).toMatchObject({ scheduled: N, inFlight: 0, acked: 0, workers: 1 })
      expect(after.peakRss, `peak RSS after the restart ${mb(after.peakRss)}`).toBeLessThan(
        RSS_LIMIT,
      )
      await worker.close()
      await close(second.child)
      console.log(
        `${N} messages delayed by an hour: journaled in ${sent["ms"] as number} ms (peak RSS ${mb(sent.peakRss)}); reopened with ${after.stats.scheduled} scheduled (peak RSS ${mb(after.peakRss)}) in ${Math.round(performance.now() - t1)} ms; ${Math.round(performance.now() - t0)} ms in all`,
      )
    },
    2 * SEND_MS,
  )
})
