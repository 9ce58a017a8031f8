/**
 * Chaos child: a `Worker` that processes `{ n }` messages. argv[2] is a JSON `WorkerChildConfig`.
 * For every message it reports `{ type: "done", n, id, attempt }` over fork IPC and waits until
 * that report is written to the pipe before returning, so the ack (the handler's return) can
 * never reach the sender before the parent knows the message was processed. Also reports
 * `{ type: "sender:ready" | "sender:lost", … }`, and `{ type: "stats", stats }` every 500 ms. The parent SIGKILLs and SIGSTOPs it at random.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { Worker } from "../../patterns/index.js"

export interface WorkerChildConfig {
  endpoint: string
  concurrency: number
  heartbeatInterval: number
  liveness: number
  /** Reconnect backoff after losing the sender (ms). */
  reconnect: { initial: number; max: number }
  /** Simulated work per message: a random time in [0, jobMs] ms. */
  jobMs: number
}

const config = JSON.parse(process.argv[2] ?? "{}") as WorkerChildConfig

function report(m: object): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || !process.send) return resolve()
    process.send(m, undefined, {}, () => resolve())
  })
}

const worker = new Worker({
  connect: config.endpoint,
  concurrency: config.concurrency,
  heartbeatInterval: config.heartbeatInterval,
  liveness: config.liveness,
  reconnect: { ...config.reconnect, factor: 2, jitter: 0.2 },
  closeTimeout: 500,
  handler: async (payload, ctx) => {
    const { n } = payload as { n: number }
    if (config.jobMs > 0) await sleep(Math.random() * config.jobMs)
    await report({ type: "done", n, id: ctx.id, attempt: ctx.attempt })
    return null
  },
})
worker.on("sender:ready", (e) => void report({ type: "sender:ready", ...e }))
worker.on("sender:lost", (e) => void report({ type: "sender:lost", ...e }))
worker.on("error", (err) => void report({ type: "error", message: err.message }))
// An orphan (the runner died without killing us) must not outlive it.
process.on("disconnect", () => process.exit(0))
await worker.open()
setInterval(() => void report({ type: "stats", stats: worker.stats() }), 500).unref()
void report({ type: "started", pid: process.pid })
