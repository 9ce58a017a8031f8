/**
 * Large messages through a journaled Sender: 8 MiB payloads across a SIGKILL of the sender at
 * "os" and "fsync", every resolved send delivered byte for byte after a restart, and the journal's
 * disk given back once they are acked.
 */
import { once } from "node:events"
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { largePayload } from "../helpers/large-payload.js"
import { journalStats, tempDir } from "../helpers/journal-files.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { forkFixture } from "../helpers/processes.js"

const MiB = 1024 * 1024

describe("large messages", { timeout: 90_000 }, () => {
  const cases = [
    ["os", "raw"],
    ["fsync", "raw"],
    ["os", "msgpack"],
  ] as const
  for (const [durability, codec] of cases) {
    it(`8 MiB sends at "${durability}" (codec ${codec}) that resolved before a SIGKILL are delivered after a restart, byte for byte; the disk is given back`, async () => {
      const dir = await tempDir()
      const size = 8 * MiB
      const child = forkFixture("large-sender.ts", [dir, String(size), durability, "40", codec])
      const resolved = new Set<number>()
      const killAt = 9
      child.process.on("message", (m: { type?: string; seq?: number }) => {
        if (m.type !== "resolved" || m.seq === undefined) return
        resolved.add(m.seq)
        // Two sends are in flight: one resolved, the other and the next are under way.
        if (resolved.size === killAt) child.process.kill("SIGKILL")
      })
      const [, signal] = (await once(child.process, "exit")) as [number | null, string | null]
      expect(signal).toBe("SIGKILL")

      const sender = await openSender({
        journal: dir,
        codec,
        maxMessageSize: 2 * size,
        heartbeatInterval: 1000, // an 8 MiB message keeps a loop busy for a while
      })
      const pending = sender.stats().ready + sender.stats().backlog
      expect(pending).toBeGreaterThanOrEqual(resolved.size)
      const seen = new Map<number, boolean>()
      const prefixes = Array.from({ length: 40 }, (_, seq) => largePayload(String(seq), 32))
      let deliveries = 0
      let strangers = 0
      await openWorker(sender.endpoint ?? "", {
        codec,
        concurrency: 2,
        maxMessageSize: 2 * size,
        heartbeatInterval: 1000,
        handler: (payload) => {
          const body = payload as Buffer
          deliveries++
          // The seq is the hash chain's seed: its first 32 bytes tell it.
          const seq = prefixes.findIndex((p) => body.subarray(0, 32).equals(p))
          if (seq < 0) strangers++
          else
            seen.set(seq, (seen.get(seq) ?? true) && body.equals(largePayload(String(seq), size)))
          return codec === "raw" ? Buffer.alloc(0) : null
        },
      })
      await sender.drained()
      for (const seq of resolved) expect(seen.get(seq), `seq ${seq}`).toBe(true)
      for (const [seq, intact] of seen) expect(intact, `seq ${seq}`).toBe(true)
      expect(strangers).toBe(0)
      expect(seen.size).toBe(pending)
      expect(sender.stats()).toMatchObject({ acked: pending, dead: 0, nacked: 0 })
      expect(deliveries).toBe(pending) // nothing twice: the worker never missed a heartbeat
      await sender.close()
      expect(await journalStats(dir)).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      // Every segment of the value log is gone with the last ack.
      const left = await readdir(join(dir, "values")).catch(() => [] as string[])
      expect(left.filter((n) => n.endsWith(".vlog"))).toEqual([])
    })
  }

  it("200 × 8 MiB sends with no worker: the sender's memory is bounded by windowBytes, not by the 1.6 GB pending", async () => {
    const dir = await tempDir()
    const child = forkFixture("sf-sender.ts", [
      dir,
      JSON.stringify({ durability: "os", count: 200, batch: 4, size: 8 * MiB }),
    ])
    const sent = await child.waitFor(
      (m) => m["type"] === "all-sent" || m["type"] === "stalled",
      60_000,
    )
    expect(sent["type"]).toBe("all-sent")
    const stats = sent["stats"] as { inWindowBytes: number; backlog: number }
    expect(stats.inWindowBytes).toBeLessThanOrEqual(64 * MiB)
    expect(stats.backlog).toBeGreaterThanOrEqual(200 - 8)
    const peakRss = sent["peakRss"] as number
    console.log(`200 × 8 MiB offline sends: peak RSS ${Math.round(peakRss / MiB)} MiB`)
    expect(peakRss).toBeLessThan(512 * MiB)
  })
})
