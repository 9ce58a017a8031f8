/**
 * The restarted sender of `bench/journal.ts`'s restart case, in a fresh process: opens a `Sender`
 * on an existing journal full of pending messages (a worker already waits on `endpoint`) and
 * samples its own RSS (and, on Linux, its anonymous part) every 2 ms from before the open until the
 * parent asks for the report. The kernel's peak (`resourceUsage().maxRSS`), which no sampling can
 * miss, is reported too.
 *
 * argv: journal directory, endpoint.
 * IPC to the parent: `{ type: "opened", t0, openMs }` once `Sender.open()` resolved (t0: epoch ms,
 * sub-ms precision, just before it was called); on `{ type: "report" }`, `{ type: "result",
 * rssBeforeMb, peakRssMb, maxRssMb, peakAnonMb, samples, backlog, now }`. It then waits to be
 * killed; it exits when the IPC channel closes.
 *
 * It never polls `sender.stats()`: the parent learns from the worker how far delivery got (a
 * stats() call costs milliseconds with a full latency histogram, which would slow the sender).
 */
import { readFileSync } from "node:fs"
import { sampleMemory } from "../lib/statm.js"
import { Sender } from "../../patterns/index.js"

const [dir, endpoint] = process.argv.slice(2)
const MB = 1024 * 1024

process.on("disconnect", () => process.exit(0))
const now = (): number => performance.timeOrigin + performance.now()

const sampler = sampleMemory(2)

const t0 = now()
const sender = await Sender.open({ bind: endpoint ?? "", journal: dir ?? "", codec: "raw" })
process.send?.({ type: "opened", t0, openMs: now() - t0 })
process.on("message", (m: { type?: string }) => {
  if (m.type !== "report") return
  const { rssBefore, peak, peakAnon, samples } = sampler.stop()
  const mem = process.memoryUsage()
  process.send?.({
    type: "result",
    rssBeforeMb: Math.round(rssBefore / MB),
    peakRssMb: Math.round(peak / MB),
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    peakAnonMb: Math.round(peakAnon / MB),
    samples,
    backlog: sender.stats().backlog,
    // Where the memory is now (Linux: anonymous memory vs pages of mapped files, such as the
    // LevelDB tables that LevelDB mmaps for reading).
    now: {
      rssMb: Math.round(mem.rss / MB),
      heapUsedMb: Math.round(mem.heapUsed / MB),
      externalMb: Math.round(mem.external / MB),
      ...procStatus(),
    },
  })
})

function procStatus(): Record<string, number> {
  try {
    const text = readFileSync("/proc/self/status", "utf8")
    const out: Record<string, number> = {}
    for (const field of ["RssAnon", "RssFile"]) {
      const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1]
      if (kb !== undefined) out[`${field.slice(3).toLowerCase()}Mb`] = Math.round(Number(kb) / 1024)
    }
    return out
  } catch {
    return {}
  }
}
