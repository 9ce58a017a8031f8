/**
 * Partition child: a `Worker` inside a network namespace. argv[2]: JSON
 * `{ connect, concurrency, heartbeatInterval, liveness, hold }` (`connect`: one endpoint, or the
 * two of a sender pair). With `hold`, handlers wait for the `{ type: "release" }` command before
 * they finish (so the worker holds messages unacked).
 * Reports (stdout JSON lines): `{ type: "job" | "done", n, id, attempt, at }`,
 * `{ type: "sender:ready" | "sender:lost", …, at }`, `{ type: "vote", endpoint, at }` for each
 * vote for a sender of a pair, `{ type: "stats", stats }` on `{ type: "stats" }`.
 */
import { Worker } from "../../patterns/index.js"
import { emit, onCommand } from "./lines.js"

const config = JSON.parse(process.argv[2] ?? "{}") as {
  connect: string | string[]
  concurrency: number
  heartbeatInterval: number
  liveness: number
  hold: boolean
}
let release: () => void = () => undefined
const released = config.hold ? new Promise<void>((r) => (release = r)) : Promise.resolve()

const worker = new Worker({
  connect: config.connect,
  concurrency: config.concurrency,
  heartbeatInterval: config.heartbeatInterval,
  liveness: config.liveness,
  reconnect: { initial: 100, max: 400 },
  closeTimeout: 500,
  handler: async (payload, ctx) => {
    const { n } = payload as { n: number }
    emit({ type: "job", n, id: ctx.id, attempt: ctx.attempt, at: Date.now() })
    await released
    emit({ type: "done", n, id: ctx.id, attempt: ctx.attempt, at: Date.now() })
    return null
  },
})
worker.on("sender:ready", (e) => emit({ type: "sender:ready", ...e, at: Date.now() }))
worker.on("sender:lost", (e) => emit({ type: "sender:lost", ...e, at: Date.now() }))
worker.on("pair:vote", (e) => emit({ type: "vote", ...e, at: Date.now() }))
worker.on("error", (err) => emit({ type: "error", message: err.message }))
onCommand((c) => {
  if (c.type === "release") {
    release()
    emit({ type: "released", at: Date.now() })
  } else if (c.type === "stats") emit({ type: "stats", stats: worker.stats() })
})
await worker.open()
emit({ type: "started", pid: process.pid })
