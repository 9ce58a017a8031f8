/**
 * A sender child of `pirate demo --pair`: one `Sender` of a high-availability pair (a LevelDB
 * journal of its own, durability "replicated") that is also the producer while it is active. It
 * reports its pair state; the parent tells the active one where to start producing (after the
 * last message whose `send()` resolved on either sender) and it reports how far `send()` has
 * resolved, then "drained" once everything produced is acked.
 * argv[2]: a JSON `PairSenderConfig`.
 */
import { Sender, type SenderStats } from "../../patterns/index.js"
import { errorMessage } from "../cli.js"
import type { PairParentMessage, PairSenderConfig, PairSenderMessage } from "./ipc.js"
import { produce } from "./produce.js"

const config = JSON.parse(process.argv[2] ?? "{}") as PairSenderConfig

function post(message: PairSenderMessage): void {
  if (process.connected) process.send?.(message)
}

// Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop.
process.on("SIGINT", () => undefined)
process.on("disconnect", () => process.exit(1))

/** The messages the sender holds that are not acked. */
const pending = (s: SenderStats): number => s.ready + s.delayed + s.inFlight + s.backlog

async function main(): Promise<void> {
  const sender = await Sender.open({
    bind: config.bind,
    journal: config.journal,
    durability: "replicated",
    heartbeatInterval: config.heartbeatInterval,
    window: config.window,
    // Holds the producer back to about two windows ahead of the workers, so that the stream
    // still runs when the active sender is killed (a journal alone never makes send() wait).
    maxBacklog: config.window,
    pair: { role: config.role, bind: config.pairBind, peer: config.peer },
  })
  // Taking over, the sender read its replica of the journal before it said so: what it holds now
  // is what it redelivers.
  sender.on("pair:active", ({ epoch, reason }) =>
    post({ type: "state", state: "active", epoch, reason, pending: pending(sender.stats()) }),
  )
  sender.on("pair:passive", ({ epoch, reason }) =>
    post({ type: "state", state: "passive", epoch, reason, pending: pending(sender.stats()) }),
  )
  sender.on("worker:lost", ({ reason, requeued }) =>
    post({ type: "worker:lost", reason, requeued }),
  )
  sender.on("error", (err) => post({ type: "error", message: errorMessage(err) }))
  post({ type: "ready", endpoint: sender.endpoint, state: sender.state })

  const timer = setInterval(
    () => post({ type: "stats", stats: sender.stats() }),
    config.statsInterval,
  )
  let producing = false
  process.on("message", (m: PairParentMessage) => {
    if (m.type === "produce" && !producing) {
      producing = true
      produce(
        (payload) => sender.send(payload),
        m.from,
        config.to,
        (upTo) => post({ type: "sent", upTo }),
      )
        .then(() => sender.drained())
        .then(
          () => post({ type: "drained", stats: sender.stats() }),
          (err: unknown) => post({ type: "error", message: errorMessage(err) }),
        )
    } else if (m.type === "close") {
      clearInterval(timer)
      sender.close().then(
        () => process.exit(0),
        (err: unknown) => {
          post({ type: "error", message: `close failed: ${errorMessage(err)}` })
          process.exit(1)
        },
      )
    }
  })
}

main().catch((err: unknown) => {
  post({ type: "error", message: errorMessage(err) })
  process.exitCode = 1
  // Let the IPC message go out, then leave even if sockets are still open.
  setTimeout(() => process.exit(1), 100)
})
