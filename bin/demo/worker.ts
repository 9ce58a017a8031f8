/**
 * A worker child of `pirate demo`: a `Worker` whose handler takes a few ms per message and tells
 * the parent which messages it processed. The report is written to the IPC pipe before the
 * handler returns, that is before the ack leaves, so a SIGKILL can never hide a message that was
 * acked: what the parent counts as processed is a lower bound of what really was.
 * argv[2]: a JSON `WorkerConfig`.
 *
 * With PIRATE_DEMO_RECORD=<folder> in the environment each worker also appends `n id attempt`
 * lines to a file of its own there, before its ack leaves: a record of the work kept apart from
 * the parent's count, which the demo's test checks the summary against.
 */
import { appendFileSync } from "node:fs"
import { join } from "node:path"
import { Worker } from "../../patterns/index.js"
import { errorMessage } from "../cli.js"
import type { DemoPayload, ParentMessage, Processed, WorkerConfig, WorkerMessage } from "./ipc.js"

const config = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig

function post(message: WorkerMessage, callback?: () => void): void {
  if (process.connected) process.send?.(message, undefined, {}, callback)
}

process.on("SIGINT", () => undefined)
process.on("disconnect", () => process.exit(1))

// Reports of one event loop turn go in one IPC message; each handler waits until it is written.
let batch: Processed[] = []
let waiting: (() => void)[] = []
function reportProcessed(item: Processed): Promise<void> {
  if (batch.length === 0) setImmediate(flush)
  batch.push(item)
  return new Promise((resolve) => waiting.push(resolve))
}
function flush(): void {
  const items = batch
  const resolves = waiting
  batch = []
  waiting = []
  post({ type: "done", items }, () => {
    for (const resolve of resolves) resolve()
  })
}

const recordDir = process.env["PIRATE_DEMO_RECORD"]
const recordFile =
  recordDir === undefined ? undefined : join(recordDir, `worker-${process.pid}.log`)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts the worker; the sender need not exist yet (the worker waits for it). */
function start(endpoint: string | string[]): Worker {
  const worker = new Worker({
    connect: endpoint,
    concurrency: config.concurrency,
    heartbeatInterval: config.heartbeatInterval,
    liveness: config.liveness,
    reconnect: { initial: config.reconnect, max: 1000 },
    handler: async (payload, ctx) => {
      const { n } = payload as DemoPayload
      await sleep(config.minDelay + Math.random() * (config.maxDelay - config.minDelay))
      if (recordFile !== undefined) appendFileSync(recordFile, `${n} ${ctx.id} ${ctx.attempt}\n`)
      await reportProcessed([n, ctx.id, ctx.attempt])
      return n
    },
  })
  worker.on("sender:ready", ({ endpoint }) => post({ type: "connected", endpoint }))
  worker.on("sender:lost", ({ endpoint, reason }) => post({ type: "lost", endpoint, reason }))
  worker.on("pair:vote", ({ endpoint }) => post({ type: "vote", endpoint }))
  worker.on("error", (err) => post({ type: "error", message: errorMessage(err) }))
  worker.open().catch((err: unknown) => {
    post({ type: "error", message: errorMessage(err) })
    process.exit(1)
  })
  return worker
}

let worker = config.endpoint === undefined ? undefined : start(config.endpoint)

process.on("message", (m: ParentMessage) => {
  if (m.type === "connect") worker ??= start(m.endpoint)
  else if (m.type === "close") {
    const closing = worker?.close() ?? Promise.resolve()
    closing.then(
      () => post({ type: "closed" }, () => process.exit(0)),
      (err: unknown) => {
        post({ type: "error", message: `close failed: ${errorMessage(err)}` })
        process.exit(1)
      },
    )
  }
})
