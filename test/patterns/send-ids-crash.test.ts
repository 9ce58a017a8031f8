/**
 * Idempotent sends across a SIGKILL of the sender: a producer that is unsure what it sent before
 * the crash sends its last 1 000 again with the same send ids after the restart; none is processed
 * twice unless it was in flight when the sender died, or acked without the ack written yet (the
 * at-least-once window send ids do not close: the worker ran it, the journal does not know).
 */
import { describe, expect, it } from "vitest"
import { tempDir } from "../helpers/journal-files.js"
import { openWorker } from "../helpers/paranoid.js"
import { forkFixture } from "../helpers/processes.js"

const TOTAL = 3000

describe("send ids across a sender SIGKILL", () => {
  it("the producer resends its last 1 000 after a restart: only messages in flight at the crash run twice", async () => {
    const journal = await tempDir("send-ids-crash-")
    const first = forkFixture("idem-sender.ts", [
      JSON.stringify({ bind: "tcp://127.0.0.1:*", journal, from: 0, to: TOTAL, batch: 100 }),
    ])
    const { endpoint } = (await first.waitFor((m) => m["type"] === "open", 20_000)) as {
      endpoint: string
    }
    const runs = new Map<string, number>()
    await openWorker(endpoint, {
      codec: "raw",
      concurrency: 4,
      prefetch: 16,
      handler: async (payload) => {
        const n = String(payload)
        runs.set(n, (runs.get(n) ?? 0) + 1)
        await new Promise((r) => setImmediate(r))
        return Buffer.alloc(0) // a raw worker replies with bytes
      },
    })
    // Kill it mid-stream, with sends resolved and not yet processed, and some in flight.
    const sent = (await first.waitFor(
      (m) => m["type"] === "sent" && (m["upTo"] as number) >= 2000,
      30_000,
    )) as { upTo: number }
    await first.kill("SIGKILL")
    const before = new Map(runs)
    const resolvedBefore = sent.upTo

    // The restarted producer resends from 1 000 before the last it saw resolve, to the end.
    const from = Math.max(0, resolvedBefore - 1000)
    const second = forkFixture("idem-sender.ts", [
      JSON.stringify({ bind: endpoint, journal, from, to: TOTAL, batch: 100 }),
    ])
    const done = (await second.waitFor((m) => m["type"] === "drained", 60_000)) as {
      stats: { sent: number; deduplicated: number }
    }
    // Every message ran at least once.
    const missing = Array.from({ length: TOTAL }, (_, n) => String(n)).filter((n) => !runs.has(n))
    expect(missing).toEqual([])
    // Twice only for those that had run before the crash and came again from the journal (in
    // flight when it died, or acked without the ack written yet): never one the resend enqueued.
    const twice = [...runs].filter(([, k]) => k > 1).map(([n]) => n)
    expect(twice.filter((n) => !before.has(n))).toEqual([])
    expect([...runs.values()].every((k) => k <= 2)).toBe(true)
    // Every resend of a message that had resolved before the crash enqueued nothing.
    expect(done.stats.deduplicated).toBeGreaterThanOrEqual(resolvedBefore - from)
    expect(done.stats.sent + done.stats.deduplicated).toBe(TOTAL - from)
    expect(done.stats).toMatchObject({ dead: 0, nacked: 0 })
  }, 90_000)
})
