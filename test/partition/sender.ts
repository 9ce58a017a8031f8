/**
 * Partition child: a `Sender` (memory journal) bound to a veth address inside a network namespace.
 * argv[2]: JSON `{ bind, heartbeatInterval, liveness }`. Reports (stdout JSON lines):
 * `{ type: "open", endpoint }`, `{ type: "worker:ready" | "worker:lost", …, at }` (at: Date.now()),
 * `{ type: "sent", ids }`, `{ type: "stats", stats }`, `{ type: "drained", stats }`.
 * Commands (stdin JSON lines): `{ type: "send", from, count }`, `{ type: "stats" }`, `{ type: "drain" }`.
 */
import { Sender } from "../../patterns/index.js"
import { emit, onCommand } from "./lines.js"

const config = JSON.parse(process.argv[2] ?? "{}") as {
  bind: string
  heartbeatInterval: number
  liveness: number
}
const sender = await Sender.open({
  bind: config.bind,
  heartbeatInterval: config.heartbeatInterval,
  liveness: config.liveness,
})
sender.on("worker:ready", (e) => emit({ type: "worker:ready", ...e, at: Date.now() }))
sender.on("worker:lost", (e) => emit({ type: "worker:lost", ...e, at: Date.now() }))
sender.on("message:requeued", (e) => emit({ type: "requeued", ...e, at: Date.now() }))
sender.on("error", (err) => emit({ type: "error", message: err.message }))
onCommand(async (c) => {
  if (c.type === "send") {
    const from = c["from"] as number
    const count = c["count"] as number
    const ids = await Promise.all(
      Array.from({ length: count }, (_, i) => sender.send({ n: from + i })),
    )
    emit({ type: "sent", ids })
  } else if (c.type === "stats") emit({ type: "stats", stats: sender.stats() })
  else if (c.type === "drain") {
    await sender.drained()
    emit({ type: "drained", stats: sender.stats() })
  }
})
emit({ type: "open", endpoint: sender.endpoint })
