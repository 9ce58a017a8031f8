/**
 * Chaos child: a `Sender` with a LevelDB journal that is also the producer. argv[2] is a JSON
 * `SenderChildConfig`. It sends `{ n }` for n = from … from+count-1 (at most `concurrency` sends
 * outstanding, paced at `rate` msgs/s when given) and talks to the parent over fork IPC:
 *
 * - `{ type: "open", endpoint, pid, recovered, recoveredIds }` once bound (the messages found in the journal)
 * - `{ type: "sent", upTo, next }` whenever every n below `upTo` has had its `send()` resolve
 *   (`next`: the next number a send will start for)
 * - `{ type: "all-sent", upTo }` when the producer is done
 * - `{ type: "rss", rss }` every `sampleInterval` ms, `{ type: "stats", stats, workers }` every 4 samples
 * - `{ type: "worker:lost" | "worker:ready" | "requeued" | "nacked" | "dead", … }` for the sender's events
 * - on `{ type: "start", epoch }`: starts producing (unless `epoch` was given in the config)
 * - on `{ type: "finish" }`: waits for `drained()`, then `{ type: "drained", stats, journal }`,
 *   closes the sender and exits 0.
 *
 * The parent kills it with SIGKILL at random: nothing here may rely on running to the end.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { Sender } from "../../patterns/index.js"

export interface SenderChildConfig {
  bind: string
  journal: string
  from: number
  count: number
  /** Sends outstanding at most (like an application with many concurrent producers). */
  concurrency: number
  /** Messages per second at most (0: as fast as the window allows), on a schedule that starts at `epoch`. */
  rate: number
  /** Date.now() when message 0 was due: a restarted producer catches up with the schedule. 0: wait for `{ type: "start", epoch }`. */
  epoch: number
  heartbeatInterval: number
  liveness: number
  sampleInterval: number
}

const config = JSON.parse(process.argv[2] ?? "{}") as SenderChildConfig
const report = (m: object): void => {
  if (process.connected) process.send?.(m)
}

const sender = await Sender.open({
  bind: config.bind,
  journal: config.journal,
  durability: "os",
  heartbeatInterval: config.heartbeatInterval,
  liveness: config.liveness,
})
sender.on("worker:lost", (e) => report({ type: "worker:lost", ...e }))
sender.on("worker:ready", (e) => report({ type: "worker:ready", ...e }))
sender.on("message:requeued", (e) => report({ type: "requeued", ...e }))
sender.on("message:nacked", (e) => report({ type: "nacked", ...e }))
sender.on("message:dead", (e) => report({ type: "dead", ...e }))
sender.on("error", (err) => report({ type: "error", message: err.message }))
{
  // What this sender found in its journal (before any new send): the parent uses the ids to
  // tell which duplicates a crash caused.
  const recovered = await sender.journal.pending({ limit: 1_000_000 })
  report({
    type: "open",
    endpoint: sender.endpoint,
    pid: process.pid,
    recovered: recovered.length,
    recoveredIds: recovered.map((e) => e.id),
  })
}

let samples = 0
const sampler = setInterval(() => {
  report({ type: "rss", rss: process.memoryUsage().rss })
  if (++samples % 4 === 0)
    report({ type: "stats", stats: sender.stats(), workers: sender.workers() })
}, config.sampleInterval)
sampler.unref()

let start: (epoch: number) => void = () => undefined
const started = new Promise<number>((resolve) => (start = resolve))
if (config.epoch > 0) start(config.epoch)
process.on("message", (m: { type?: string; epoch?: number }) => {
  if (m.type === "start") start(m.epoch ?? Date.now())
  if (m.type !== "finish") return
  void (async () => {
    await sender.drained()
    const journal = await sender.journal.stats()
    const drained = { type: "drained", stats: sender.stats(), journal }
    // Exits right after: wait until the report is written to the pipe.
    await new Promise((resolve) => process.send?.(drained, undefined, {}, resolve))
    await sender.close()
    process.exit(0)
  })()
})
// An orphan (the runner died without killing us) must not outlive it.
process.on("disconnect", () => process.exit(0))
// Keeps the process up (and the IPC channel open) until the parent says "finish" or kills it.
setInterval(() => undefined, 1 << 30)

const epoch = await started
const end = config.from + config.count
let next = config.from
let upTo = config.from
const resolved = new Set<number>()
// The producer never runs more than `concurrency` sends ahead of what the parent has been told
// (a report written to the pipe): a report still in this process dies with it, and the parent
// resumes from what it knows, so this bounds what a restarted producer sends again.
let reportedUpTo = config.from
let writing = false
const wake: (() => void)[] = []
function flushReport(): void {
  if (writing || upTo === reportedUpTo || !process.connected || !process.send) return
  writing = true
  const value = upTo
  process.send({ type: "sent", upTo: value, next }, undefined, {}, () => {
    writing = false
    reportedUpTo = value
    for (const w of wake.splice(0)) w()
    flushReport()
  })
}
async function pump(): Promise<void> {
  while (next < end) {
    while (next >= reportedUpTo + config.concurrency)
      await new Promise<void>((resolve) => wake.push(resolve))
    if (next >= end) break
    const n = next++
    if (config.rate > 0) {
      const wait = epoch + (n * 1000) / config.rate - Date.now()
      if (wait > 0) await sleep(wait)
    }
    await sender.send({ n })
    resolved.add(n)
    if (n === upTo) {
      while (resolved.delete(upTo)) upTo++
      flushReport()
    }
  }
}
await Promise.all(Array.from({ length: config.concurrency }, pump))
report({ type: "all-sent", upTo })
