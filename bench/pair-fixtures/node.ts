/**
 * One sender of a pair in a child process, for `bench/pair.ts`. argv: JSON
 *   { role, journal, bind, pairBind, peer, heartbeatInterval?, timeout?, whenAlone?,
 *     durability? ("replicated" by default) }
 * Every time stamp `at` is `Date.now()` (the wall clock: the parent compares it with its own, on
 * the same machine; there is no monotonic clock shared by two processes).
 *
 * IPC to the parent:
 *   { type: "open", at, openMs, endpoint, pairEndpoint, state } once `Sender.open()` resolved;
 *   { type: "state", state, epoch, reason, at } on each `pair:active` / `pair:passive`;
 *   { type: "replicated", replicated, at } each time `stats().pair.replicated` changes (polled
 *     every 10 ms; false at the start is not reported);
 *   { type: "error", code, message } for an `error` event.
 * Commands:
 *   { type: "stream", batch, pauseMs }: light load: `batch` sends of SIZE-byte payloads awaited
 *     together, then a pause, until { type: "stop" } (→ { type: "stopped", resolved }) or a
 *     rejection (→ { type: "rejected", code, resolved });
 *   { type: "stats" } → { type: "stats", stats, cpuUs, rssMb, peakRssMb, peakAnonMb, maxRssMb }:
 *     the sender's stats, CPU time used so far (µs), the RSS now, its peak and the peak of its
 *     anonymous part sampled every 20 ms since the start, and the kernel's peak RSS (maxRSS);
 *   { type: "close" } → closes, { type: "closed" }, and exits.
 * The process exits when the IPC channel closes.
 */
import { randomBytes } from "node:crypto"
import { Sender } from "../../patterns/index.js"
import { anonymous } from "../lib/statm.js"
import type { NodeConfig } from "../pair-cases/nodes.js"

/** Peak RSS and peak anonymous memory, sampled every 20 ms from the start. */
const peaks = { rss: process.memoryUsage.rss(), anon: anonymous() ?? 0 }
setInterval(() => {
  peaks.rss = Math.max(peaks.rss, process.memoryUsage.rss())
  peaks.anon = Math.max(peaks.anon, anonymous() ?? 0)
}, 20).unref()
const o = JSON.parse(process.argv[2] ?? "{}") as NodeConfig
/** A PirateError's `code`, else undefined. */
const errorCode = (err: unknown): string | undefined =>
  typeof err === "object" && err !== null && "code" in err && typeof err.code === "string"
    ? err.code
    : undefined
const tell = (m: object): void => {
  if (process.connected) process.send?.(m)
}
const MB = 1024 * 1024
const mb = (bytes: number): number => Math.round((bytes / MB) * 10) / 10
const bodies = Array.from({ length: 64 }, () => randomBytes(o.size ?? 256))

const t0 = performance.now()
const sender = await Sender.open({
  bind: o.bind,
  journal: o.journal,
  durability: o.durability ?? "replicated",
  ...(o.heartbeatInterval === undefined ? {} : { heartbeatInterval: o.heartbeatInterval }),
  pair: {
    role: o.role,
    bind: o.pairBind,
    peer: o.peer,
    ...(o.timeout === undefined ? {} : { timeout: o.timeout }),
    ...(o.whenAlone === undefined ? {} : { whenAlone: o.whenAlone }),
  },
})
sender.on("pair:active", (e) => tell({ type: "state", state: "active", ...e, at: Date.now() }))
sender.on("pair:passive", (e) => tell({ type: "state", state: "passive", ...e, at: Date.now() }))
sender.on("error", (err) => tell({ type: "error", code: errorCode(err), message: err.message }))
tell({
  type: "open",
  at: Date.now(),
  openMs: performance.now() - t0,
  endpoint: sender.endpoint,
  pairEndpoint: sender.pairEndpoint,
  state: sender.state,
})

let replicated = false
const poll = setInterval(() => {
  if (sender.status !== "open") return
  const now = sender.stats().pair?.replicated ?? false
  if (now === replicated) return
  replicated = now
  tell({ type: "replicated", replicated: now, at: Date.now() })
}, 10)

let streaming = false
async function stream(batch: number, pauseMs: number): Promise<void> {
  if (streaming) return
  streaming = true
  let resolved = 0
  while (streaming) {
    try {
      await Promise.all(
        Array.from({ length: batch }, (_, i) => sender.send(bodies[i % bodies.length])),
      )
    } catch (err) {
      streaming = false
      tell({ type: "rejected", code: errorCode(err), resolved })
      return
    }
    resolved += batch
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs))
  }
  tell({ type: "stopped", resolved })
}

process.on("disconnect", () => process.exit(0))
process.on("message", (m: { type: string; batch?: number; pauseMs?: number }) => {
  switch (m.type) {
    case "stream":
      void stream(m.batch ?? 10, m.pauseMs ?? 10)
      break
    case "stop":
      streaming = false
      break
    case "stats": {
      const { user, system } = process.cpuUsage()
      tell({
        type: "stats",
        stats: sender.stats(),
        cpuUs: user + system,
        rssMb: mb(process.memoryUsage.rss()),
        peakRssMb: mb(peaks.rss),
        peakAnonMb: mb(peaks.anon),
        // resourceUsage().maxRSS is in KiB.
        maxRssMb: mb(process.resourceUsage().maxRSS * 1024),
      })
      break
    }
    case "close":
      streaming = false
      clearInterval(poll)
      void sender.close().finally(() => {
        tell({ type: "closed" })
        process.exit(0)
      })
      break
    default:
      break
  }
})
