/**
 * `pirate demo --pair` end to end, as a user runs it (`node bin/pirate.js demo --pair`), small
 * and quiet: the active sender of a pair is SIGKILLed mid-stream, the passive takes over and
 * nothing may be lost. What was processed is counted from the workers' own records
 * (PIRATE_DEMO_RECORD), not taken from the demo's verdict. The summary's wording is tested on its
 * own below.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { pirate, workerRecords } from "../helpers/demo.js"
import { renderPairSummary, type PairDemoRun } from "../../bin/demo/pair-summary.js"
import type { Copy } from "../../bin/demo/summary.js"

describe("pirate demo --pair", () => {
  it("kills the active sender mid-stream; the passive takes over and nothing is lost", async (t) => {
    const records = await mkdtemp(join(tmpdir(), "pirate-demo-pair-records-"))
    t.onTestFinished(() => rm(records, { recursive: true, force: true }))
    const total = 800
    const run = await pirate(
      t,
      ["demo", "--pair", "--quiet", "--messages", String(total), "--workers", "2"],
      { env: { PIRATE_DEMO_RECORD: records } },
    )
    expect(run.stderr).toBe("")
    expect(run.code, run.stdout).toBe(0)

    // Every message was processed, by the workers' own account, and nothing else.
    const runs = workerRecords(records)
    const missing = Array.from({ length: total }, (_, i) => i + 1).filter((n) => !runs.has(n))
    expect(missing).toEqual([])
    expect([...runs.keys()].filter((n) => n < 1 || n > total)).toEqual([])
    const duplicated = [...runs.values()].filter((r) => r > 1).length

    // --quiet: the summary only.
    expect(run.stdout.trimStart()).toMatch(/^Summary\n/)
    const flat = run.stdout.replace(/\s+/g, " ")
    expect(run.stdout).toMatch(/^ {2}sent {8}800 messages, every send\(\) resolved/m)
    expect(run.stdout).toMatch(/^ {2}processed {3}800 distinct messages/m)
    expect(run.stdout).toMatch(/^ {2}lost {8}0: /m)
    const reported = /^ {2}duplicates {2}([\d,]+)/m.exec(run.stdout)
    expect(reported, run.stdout).not.toBeNull()
    expect(Number((reported as RegExpExecArray)[1]?.replace(/,/g, ""))).toBe(duplicated)
    // The failover happened, in this order, and the killed sender came back as passive.
    expect(flat).toMatch(
      /failover - [\d.]+ s: the (primary|backup) \(pid \d+\), active, killed with SIGKILL after send\(\) #[\d,]+ - [\d.]+ s: the (primary|backup) took over [\d.]+ s after the kill \([\d,]+ worker votes?\)/,
    )
    expect(flat).toMatch(
      /the (primary|backup) restarted on its own journal: up after [\d.]+ s, passive after [\d.]+ s, caught up after [\d.]+ s/,
    )
    expect(run.stdout.trimEnd().split("\n").at(-1)).toBe("OK: nothing lost.")
  }, 90_000)
})

describe("pirate demo --pair's summary", () => {
  const processedOnce = (total: number): Map<number, Copy[]> =>
    new Map(Array.from({ length: total }, (_, i) => [i + 1, [{ id: `m${i + 1}`, attempt: 1 }]]))

  const run = (patch: Partial<PairDemoRun> = {}): PairDemoRun => ({
    total: 10,
    elapsed: 2,
    confirmed: 10,
    processed: processedOnce(10),
    faults: {
      kill: { name: "primary", pid: 41, at: 1, confirmed: 6 },
      takeover: { name: "backup", at: 1.9, after: 0.9, reason: "failover", pending: 3, votes: 2 },
      rejoin: { name: "primary", pid: 42, at: 1.9, up: 0.5, passive: 0.6, caughtUp: 0.7 },
    },
    workers: [{ name: "worker 1", killed: false, exit: "code 0", processed: 10 }],
    closedSenders: [
      { name: "primary", killed: false, exit: "code 0", processed: 0 },
      { name: "backup", killed: false, exit: "code 0", processed: 0 },
    ],
    ...patch,
  })
  const flat = (text: string): string => text.replace(/\s+/g, " ")

  it("tells the failover, and passes when every confirmed message was processed", () => {
    const { text, ok } = renderPairSummary(run())
    expect(ok).toBe(true)
    expect(flat(text)).toContain(
      "failover - 1.0 s: the primary (pid 41), active, killed with SIGKILL after send() #6 - 1.9 s: the backup took over 0.9 s after the kill (2 worker votes) and redelivered the 3 unacked messages of its replica; its producer went on after #6 - 1.9 s: the primary restarted on its own journal: up after 0.5 s, passive after 0.6 s, caught up after 0.7 s",
    )
    expect(text).toMatch(/^ {2}duplicates {2}0$/m)
    expect(text.trimEnd().split("\n").at(-1)).toBe("OK: nothing lost.")
  })

  it("a confirmed message that no worker processed is lost and fails the run", () => {
    const processed = processedOnce(10)
    processed.delete(7)
    const { text, ok } = renderPairSummary(run({ processed }))
    expect(ok).toBe(false)
    expect(text).toMatch(/^ {2}lost {8}1: #7$/m)
    expect(text.trimEnd().split("\n").at(-1)).toBe("FAILED: 1 message lost.")
  })

  it("explains duplicates by the pair's failover", () => {
    const processed = processedOnce(10)
    processed.set(1, [
      { id: "m1", attempt: 1 },
      { id: "m1", attempt: 1 }, // redelivered by the backup from its replica
    ])
    processed.set(2, [
      { id: "m2", attempt: 1 },
      { id: "m2-again", attempt: 1 }, // sent again by the backup's producer
    ])
    const summary = flat(renderPairSummary(run({ processed })).text)
    expect(summary).toContain("duplicates 2 messages processed twice")
    expect(summary).toContain(
      "- 1 processed around the kill of the primary: its ack did not reach it before it died, or reached it but not yet the backup's replica of the journal (acks are streamed to the passive, not waited for), so the backup redelivered it when it took over",
    )
    expect(summary).toContain("- 1 sent twice by the producer: the primary had written it")
  })
})
