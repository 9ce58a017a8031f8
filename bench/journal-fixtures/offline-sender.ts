/**
 * The sender of `bench/journal.ts`'s offline case, in a process of its own so that its memory is
 * its own: with `mode: "publish"` it opens a `Sender` on a fresh journal with no worker connected
 * and sends `n` messages, `batch` at a time (each batch awaited), then closes it; with
 * `mode: "drain"` it opens a `Sender` on that journal, bound to `endpoint` where the workers
 * already wait, and waits until it is drained. It samples its own RSS every 20 ms throughout, and
 * reports the kernel's peak (`resourceUsage().maxRSS`), which no sampling can miss (and which the
 * target is checked against). Sampling every 2 ms, as the restart case does, took about 5 % of
 * the draining sender's CPU (a `/proc/self/statm` read each time).
 *
 * argv: journal directory, JSON `{ mode, n?, size?, batch?, endpoint?, codec?, durability?,
 * window? }` (codec, durability, window: left to the library's defaults when absent).
 * IPC to the parent, epoch-ms times with sub-ms precision:
 *   publish: `{ type: "published", ms, closeMs, backlog, cpuUs, rssBeforeMb, peakRssMb,
 *     maxRssMb, peakAnonMb, samples }` once the sender is closed;
 *   drain: `{ type: "drained", t0, openMs, ms, acked, cpuUs, rssBeforeMb, peakRssMb, maxRssMb,
 *     peakAnonMb, samples }` once drained (t0: just before `Sender.open()`; `ms` from it).
 * It then waits to be killed; it exits when the IPC channel closes.
 */
import { randomBytes } from "node:crypto"
import { sampleMemory } from "../lib/statm.js"
import { Sender, type CodecOption, type Durability } from "../../patterns/index.js"

interface Options {
  mode: "publish" | "drain"
  n?: number
  size?: number
  batch?: number
  endpoint?: string
  codec?: CodecOption
  durability?: Durability
  window?: number
}

const [dir, optionsArg] = process.argv.slice(2)
const o = JSON.parse(optionsArg ?? "{}") as Options
const MB = 1024 * 1024
const LIMIT_MS = 600_000

process.on("disconnect", () => process.exit(0))
const now = (): number => performance.timeOrigin + performance.now()

// --- memory: sampled every 20 ms (RSS and, on Linux, its anonymous part) ----------------------

const sampler = sampleMemory(20)

function memory(): Record<string, number> {
  const { rssBefore, peak, peakAnon, samples } = sampler.stop()
  return {
    rssBeforeMb: Math.round(rssBefore / MB),
    peakRssMb: Math.round(Math.max(peak, process.memoryUsage.rss()) / MB),
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    peakAnonMb: Math.round(peakAnon / MB),
    samples,
  }
}

function cpuUs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since)
  return used.user + used.system
}

const settings = {
  journal: dir ?? "",
  ...(o.codec !== undefined ? { codec: o.codec } : {}),
  ...(o.durability !== undefined ? { durability: o.durability } : {}),
  ...(o.window !== undefined ? { window: o.window } : {}),
}

async function publish(): Promise<void> {
  const n = o.n ?? 0
  const batch = o.batch ?? 1000
  // Random payloads, 1024 of them cycled: as incompressible for LevelDB as real data.
  const payloads = Array.from({ length: 1024 }, () => randomBytes(o.size ?? 256))
  const sender = await Sender.open({ bind: "tcp://127.0.0.1:*", ...settings })
  const cpu = process.cpuUsage()
  const start = performance.now()
  const deadline = start + LIMIT_MS
  for (let i = 0; i < n;) {
    const sends: Promise<string>[] = []
    for (const end = Math.min(n, i + batch); i < end; i++)
      sends.push(sender.send(payloads[i % 1024]))
    await Promise.all(sends)
    if (performance.now() > deadline) throw new Error(`${i} of ${n} sends within ${LIMIT_MS} ms`)
  }
  const ms = performance.now() - start
  const { backlog } = sender.stats()
  const closing = performance.now()
  await sender.close()
  const closeMs = performance.now() - closing
  process.send?.({ type: "published", ms, closeMs, backlog, cpuUs: cpuUs(cpu), ...memory() })
}

async function drain(): Promise<void> {
  const cpu = process.cpuUsage()
  const t0 = now()
  const sender = await Sender.open({ bind: o.endpoint ?? "", ...settings })
  const openMs = now() - t0
  await sender.drained({ signal: AbortSignal.timeout(LIMIT_MS) })
  const ms = now() - t0
  const { acked } = sender.stats()
  process.send?.({ type: "drained", t0, openMs, ms, acked, cpuUs: cpuUs(cpu), ...memory() })
  await sender.close()
}

;(o.mode === "publish" ? publish() : drain()).catch((err: unknown) => {
  process.send?.({ type: "error", message: err instanceof Error ? err.message : String(err) })
})
