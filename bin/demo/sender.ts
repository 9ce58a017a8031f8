/**
 * The sender child of `pirate demo`: a `Sender` with a LevelDB journal that is also the producer.
 * It sends messages `from…to` ({ n }) and tells the parent how far `send()` has resolved, so that
 * after a crash the parent restarts it on the same journal to go on after the last confirmed one.
 * argv[2]: a JSON `SenderConfig`.
 */
import { Sender } from "../../patterns/index.js"
import { errorMessage } from "../cli.js"
import type { CloseMessage, SenderConfig, SenderMessage } from "./ipc.js"
import { produce } from "./produce.js"

const config = JSON.parse(process.argv[2] ?? "{}") as SenderConfig

/** Sends to the parent; dropped when the parent is gone (we exit on "disconnect" anyway). */
function post(message: SenderMessage): void {
  if (process.connected) process.send?.(message)
}

// Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop.
process.on("SIGINT", () => undefined)
process.on("disconnect", () => process.exit(1))

async function main(): Promise<void> {
  const sender = await Sender.open({
    bind: config.bind,
    journal: config.journal,
    durability: "os",
    heartbeatInterval: config.heartbeatInterval,
    window: config.window,
  })
  sender.on("worker:lost", ({ reason, requeued }) =>
    post({ type: "worker:lost", reason, requeued }),
  )
  sender.on("error", (err) => post({ type: "error", message: errorMessage(err) }))

  // Right after open, what is in the window or still on disk is what the journal held unacked.
  const s = sender.stats()
  post({
    type: "ready",
    endpoint: sender.endpoint,
    recovered: s.ready + s.delayed + s.inFlight + s.backlog,
  })

  const timer = setInterval(
    () => post({ type: "stats", stats: sender.stats() }),
    config.statsInterval,
  )
  process.on("message", (m: CloseMessage) => {
    if (m.type !== "close") return
    clearInterval(timer)
    sender.close().then(
      () => process.exit(0),
      (err: unknown) => {
        post({ type: "error", message: `close failed: ${errorMessage(err)}` })
        process.exit(1)
      },
    )
  })

  await produce(
    (payload) => sender.send(payload),
    config.from,
    config.to,
    (upTo) => post({ type: "sent", upTo }),
  )
  await sender.drained()
  post({ type: "drained", stats: sender.stats() })
}

main().catch((err: unknown) => {
  post({ type: "error", message: errorMessage(err) })
  process.exitCode = 1
  // Let the IPC message go out, then leave even if sockets are still open.
  setTimeout(() => process.exit(1), 100)
})
