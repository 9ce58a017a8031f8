/**
 * A real network partition: sender and workers in their own network namespaces, joined by veth
 * pairs on a bridge (see test/partition/netns.ts); a worker's link is cut with `ip link set down`
 * while it holds messages, then healed. Needs root and iproute2: skipped (saying why) otherwise,
 * and a failure under `CI=true` (see test/helpers/prereq.ts).
 */
import { describe, expect, it, onTestFinished } from "vitest"
import type { SenderStats, WorkerStats } from "../patterns/index.js"
import { requirePrereq } from "./helpers/prereq.js"
import { waitFor } from "./helpers/wait.js"
import { NsChild, createTopology, netnsUnavailable, type Line } from "./partition/netns.js"

const netns = requirePrereq("partition test", netnsUnavailable())

const SENDER = new URL("./partition/sender.ts", import.meta.url)
const WORKER = new URL("./partition/worker.ts", import.meta.url)
const heartbeat = { heartbeatInterval: 200, liveness: 3 }
const expiry = heartbeat.heartbeatInterval * heartbeat.liveness

const is =
  (type: string, extra: (l: Line) => boolean = () => true) =>
  (l: Line): boolean =>
    l.type === type && extra(l)

describe("network partition between namespaces", () => {
  it.runIf(netns)(
    "redelivers a cut-off worker's messages within the heartbeat timeout, ignores its late acks after healing, and gives it work again",
    { timeout: 30_000 },
    async () => {
      const children: NsChild[] = []
      const net = createTopology(2)
      onTestFinished(async ({ task }) => {
        if (task.result?.state === "fail")
          for (const c of children) console.log(`${c.name} said:\n${c.transcript()}`)
        // Processes first (a namespace with a process in it outlives `ip netns del`), then the net.
        await Promise.all(children.map((c) => c.kill()))
        net.destroy()
      })
      const [netA, netB] = net.workers as [(typeof net.workers)[0], (typeof net.workers)[0]]
      const start = (name: string, ns: string, file: URL, config: object): NsChild => {
        const child = new NsChild(name, ns, file, config)
        children.push(child)
        return child
      }

      const sender = start("sender", net.senderNs, SENDER, {
        bind: `tcp://${net.senderAddress}:*`,
        ...heartbeat,
      })
      const open = await sender.waitFor(is("open"), 15_000, "open")
      const endpoint = open["endpoint"] as string
      expect(endpoint).toMatch(/^tcp:\/\/10\.203\.0\.1:\d+$/)

      // Worker A (holding every message until told) takes the first four messages alone.
      const a = start("worker A", netA.ns, WORKER, {
        connect: endpoint,
        concurrency: 4,
        hold: true,
        ...heartbeat,
      })
      const aId = (await sender.waitFor(is("worker:ready"), 15_000, "worker A ready"))["workerId"]
      await a.waitFor(is("sender:ready"), 5000, "sender ready")
      const sent = (await sender.ask({ type: "send", from: 0, count: 4 }, "sent"))[
        "ids"
      ] as string[]
      for (const id of sent)
        await a.waitFor(
          is("job", (l) => l["id"] === id),
          5000,
          `job ${id}`,
        )

      const b = start("worker B", netB.ns, WORKER, {
        connect: endpoint,
        concurrency: 4,
        hold: false,
        ...heartbeat,
      })
      const bReady = await sender.waitFor(
        is("worker:ready", (l) => l["workerId"] !== aId),
        15_000,
        "worker B ready",
      )
      const bId = bReady["workerId"]

      // The partition: A's link goes down while it holds four messages. A finishes them at once,
      // so its acks are written into a link that drops them.
      const cutAt = performance.now()
      net.cut(netA)
      a.command({ type: "release" })
      const lost = await sender.waitFor(
        is("worker:lost", (l) => l["workerId"] === aId),
        expiry + 5000,
        "worker A lost",
      )
      const detectedAfter = lost.t - cutAt
      expect(lost["reason"]).toMatch(/no heartbeat/)
      expect(lost["requeued"]).toBe(4)
      // Detected by the heartbeat timeout (the reason says so), not by a connection error: not
      // before the expiry minus the quiet time A may have had before the cut (a heartbeat
      // interval, plus up to a quarter of one until its timer noticed, plus whatever a loaded
      // machine delayed A's timer by: another half), and not much after it.
      expect(detectedAfter).toBeGreaterThanOrEqual(expiry - 1.75 * heartbeat.heartbeatInterval)
      expect(detectedAfter).toBeLessThan(expiry + 1000)
      for (const id of sent)
        await b.waitFor(
          is("done", (l) => l["id"] === id && l["attempt"] === 2),
          5000,
          `redelivery of ${id} to B`,
        )
      for (const id of sent)
        await a.waitFor(
          is("done", (l) => l["id"] === id),
          5000,
          `A finishing ${id}`,
        )

      // Heal: A's late acks arrive and are ignored; A reconnects and takes work again.
      const healAt = performance.now()
      net.heal(netA)
      const aBack = await sender.waitFor(
        (l) => l.type === "worker:ready" && l["workerId"] !== aId && l["workerId"] !== bId,
        10_000,
        "worker A back",
      )
      expect(aBack["protocol"]).toBe("ppx")
      const more = (await sender.ask({ type: "send", from: 4, count: 40 }, "sent"))[
        "ids"
      ] as string[]
      let drained = (await sender.ask({ type: "drain" }, "drained", 15_000))["stats"] as SenderStats
      const aStats = (await a.ask({ type: "stats" }, "stats"))["stats"] as WorkerStats
      // A's four old acks travel on its old TCP connection, which the kernel retransmits on its
      // own timer (200 ms, doubling) once the link is up: they may arrive after the drain, up to
      // a few seconds after healing. Nothing announces a stale ack but the counter: ask for it,
      // at most 10 s.
      await waitFor(
        async () => {
          if (drained.staleAcks + aStats.discarded < 4)
            drained = (await sender.ask({ type: "stats" }, "stats"))["stats"] as SenderStats
          expect(drained.staleAcks + aStats.discarded).toBeGreaterThanOrEqual(4)
        },
        { timeout: 10_000, interval: 100 },
      )
      const afterHeal = a.lines.filter(
        (l) => l.type === "done" && l.t > healAt && more.includes(l["id"] as string),
      )
      console.log(
        `partition: A lost after ${Math.round(detectedAfter)} ms (expiry ${expiry} ms); ` +
          `A back ${Math.round(aBack.t - healAt)} ms after healing; ${afterHeal.length} of ${more.length} ` +
          `new messages processed by A; sender acked ${drained.acked}, staleAcks ${drained.staleAcks}, ` +
          `redelivered ${drained.redelivered}; A acked ${aStats.acked}, discarded ${aStats.discarded}`,
      )
      expect(afterHeal.length).toBeGreaterThan(0)
      // No double counting: 44 distinct messages, 44 acks; the four redelivered ones once each.
      expect(drained).toMatchObject({ sent: 44, acked: 44, redelivered: 4, inFlight: 0, ready: 0 })
      // A's four results: either its acks reached the sender after healing and were counted as
      // stale, or A threw them away itself (it had given the sender up): never acked twice.
      expect(drained.staleAcks + aStats.discarded).toBe(4)
    },
  )
})
