/**
 * A worker process for `bench/journal.ts`: one `Worker` at a time (codec "raw" unless told
 * otherwise, replies an empty frame at once), reused across the runs so that its JIT stays warm.
 *
 * argv: JSON `{ concurrency, prefetch }`.
 * IPC from the parent:
 *   `{ type: "connect", endpoint, count?, codec? }` closes the previous worker and opens a new one
 *     on `endpoint`, with `codec` ("raw" by default, or "msgpack"); answers `{ type: "connected" }` at once (the worker never waits for its sender)
 *     and `{ type: "ready" }` when the sender answered. With `count` it also reports
 *     `{ type: "first", at }` when the first job arrives and `{ type: "counted", at }` when the
 *     count-th job is done (`at`: epoch ms, sub-ms precision).
 *   `{ type: "close" }` closes the worker (GOODBYE, acks flushed) and answers
 *     `{ type: "closed", cpuUs }` (CPU time of this process since the connect, in µs).
 * The process exits when the IPC channel closes, so a parent that dies leaves nothing behind.
 */
import { Worker } from "../../patterns/index.js"

interface Options {
  concurrency: number
  prefetch: number
}

type Command =
  | { type: "connect"; endpoint: string; count?: number; codec?: "raw" | "msgpack" }
  | { type: "close" }

const options = JSON.parse(process.argv[2] ?? "{}") as Options
const ACK = Buffer.alloc(0)
let worker: Worker | undefined
let cpu = process.cpuUsage()

function tell(message: object): void {
  if (process.connected) process.send?.(message)
}

function now(): number {
  return performance.timeOrigin + performance.now()
}

async function connect(
  endpoint: string,
  count: number | undefined,
  codec: "raw" | "msgpack",
): Promise<void> {
  await worker?.close()
  cpu = process.cpuUsage()
  let done = 0
  const w = new Worker({
    connect: endpoint,
    codec,
    concurrency: options.concurrency,
    prefetch: options.prefetch,
    handler: () => {
      if (count !== undefined) {
        done++
        if (done === 1) tell({ type: "first", at: now() })
        if (done === count) tell({ type: "counted", at: now() })
      }
      return ACK
    },
  })
  w.on("sender:ready", () => tell({ type: "ready" }))
  w.on("error", (err) => tell({ type: "error", message: err.message }))
  worker = w
  await w.open()
  tell({ type: "connected" })
}

async function close(): Promise<void> {
  const w = worker
  worker = undefined
  await w?.close()
  const used = process.cpuUsage(cpu)
  tell({ type: "closed", cpuUs: used.user + used.system })
}

process.on("disconnect", () => process.exit(0))
process.on("message", (m: Command) => {
  const done =
    m.type === "connect"
      ? connect(m.endpoint, m.count, m.codec ?? "raw")
      : m.type === "close"
        ? close()
        : undefined
  done?.catch((err: unknown) => {
    tell({ type: "error", message: err instanceof Error ? err.message : String(err) })
  })
})
tell({ type: "started" })
