/**
 * Partition child: one sender of a pair (a `LevelJournal`, `durability: "replicated"`) inside a
 * network namespace. argv[2]: JSON `{ role, journal, address, heartbeatInterval, liveness,
 * whenAlone? }`, `address` being this namespace's own address on the bridge.
 *
 * A pair's addresses must be known before either node binds (each names the other), so the node
 * starts in two steps: it picks a port that is free on its address (the system's choice, as
 * test/helpers/pair.ts does on 127.0.0.1) and reports `{ type: "port", port }`; the parent then
 * sends `{ type: "open", peer }` with the other node's pair address, and the node opens the
 * sender (workers on `address:*`, the pair on `address:port`) and reports `{ type: "open",
 * endpoint, pairEndpoint, state }`.
 *
 * Reports (stdout JSON lines, `at` is `Date.now()`): `{ type: "state", state, epoch, reason, at }`
 * on each `pair:active` / `pair:passive`; `{ type: "resolved", from, to, at }` once every send of
 * a batch [from, to) resolved; `{ type: "rejected", code, next, at }` when one of a batch (the
 * first at `next`) rejected, which ends the stream; `{ type: "stopped", next }`;
 * `{ type: "stats", stats, state, at }`; `{ type: "error", code, message }` for `error` events.
 * Commands (stdin JSON lines): `{ type: "stream", from, batch }` sends payloads `{ n }` from
 * `from` on, `batch` at a time (the Promise.all of a batch, then the next), until
 * `{ type: "stop" }`; `{ type: "stats" }`.
 */
import { createServer, type AddressInfo } from "node:net"
import { errorCode } from "../../lib/errors.js"
import { Sender } from "../../patterns/index.js"
import { emit, onCommand, type Line } from "./lines.js"

const o = JSON.parse(process.argv[2] ?? "{}") as {
  role: "primary" | "backup"
  journal: string
  address: string
  heartbeatInterval: number
  liveness: number
  whenAlone?: "wait" | "local"
}

const port = await new Promise<number>((resolve, reject) => {
  const server = createServer()
  server.once("error", reject)
  server.listen(0, o.address, () => {
    const picked = (server.address() as AddressInfo).port
    server.close(() => resolve(picked))
  })
})

let sender: Sender<{ n: number }> | undefined
let streaming = false

async function open(peer: string): Promise<void> {
  const s = await Sender.open<{ n: number }>({
    bind: `tcp://${o.address}:*`,
    journal: o.journal,
    durability: "replicated",
    heartbeatInterval: o.heartbeatInterval,
    liveness: o.liveness,
    retryBackoff: { initial: 50, max: 200 },
    pair: {
      role: o.role,
      bind: `tcp://${o.address}:${port}`,
      peer,
      ...(o.whenAlone === undefined ? {} : { whenAlone: o.whenAlone }),
    },
  })
  sender = s
  s.on("pair:active", (e) => emit({ type: "state", state: "active", ...e, at: Date.now() }))
  s.on("pair:passive", (e) => emit({ type: "state", state: "passive", ...e, at: Date.now() }))
  s.on("error", (err) => emit({ type: "error", code: errorCode(err), message: err.message }))
  emit({ type: "open", endpoint: s.endpoint, pairEndpoint: s.pairEndpoint, state: s.state })
}

async function stream(s: Sender<{ n: number }>, from: number, batch: number): Promise<void> {
  streaming = true
  let next = from
  while (streaming) {
    const ns = Array.from({ length: batch }, (_, i) => next + i)
    try {
      await Promise.all(ns.map((n) => s.send({ n })))
    } catch (err) {
      streaming = false
      emit({ type: "rejected", code: errorCode(err), next, at: Date.now() })
      return
    }
    emit({ type: "resolved", from: next, to: next + batch, at: Date.now() })
    next += batch
  }
  emit({ type: "stopped", next })
}

onCommand(async (c: Line) => {
  if (c.type === "open") await open(c["peer"] as string)
  else if (sender === undefined) throw new Error(`${String(c.type)} before open`)
  else if (c.type === "stream")
    void stream(sender, (c["from"] as number | undefined) ?? 0, (c["batch"] as number) ?? 50)
  else if (c.type === "stop") streaming = false
  else if (c.type === "stats")
    emit({ type: "stats", stats: sender.stats(), state: sender.state, at: Date.now() })
})
emit({ type: "port", port })
