/**
 * The summary of `pirate demo` as a pure function of what a run observed: which messages it calls
 * lost, how it explains duplicates, and its verdict (the exit status follows `ok`).
 */
import { describe, expect, it } from "vitest"
import { renderSummary, type Copy, type DemoRun } from "../../bin/demo/summary.js"

/** Messages 1…`total`, each processed once as id `m<n>`, attempt 1. */
function processedOnce(total: number): Map<number, Copy[]> {
  return new Map(
    Array.from({ length: total }, (_, i) => [i + 1, [{ id: `m${i + 1}`, attempt: 1 }]]),
  )
}

function run(patch: Partial<DemoRun> = {}): DemoRun {
  return {
    total: 10,
    elapsed: 2,
    confirmed: 10,
    processed: processedOnce(10),
    faults: {},
    workers: [
      { name: "worker 1", killed: false, exit: "code 0", processed: 6 },
      { name: "worker 2", killed: true, exit: "SIGKILL", processed: 4 },
    ],
    closedSenders: [{ name: "sender", killed: false, exit: "code 0", processed: 0 }],
    ...patch,
  }
}

/** The summary with its wrapped lines joined, to look for phrases. */
const flat = (text: string): string => text.replace(/\s+/g, " ")

describe("pirate demo's summary", () => {
  it("every confirmed message processed once: nothing lost, no duplicates, OK", () => {
    const { text, ok } = renderSummary(run())
    expect(ok).toBe(true)
    expect(text).toMatch(/^ {2}sent {8}10 messages, every send\(\) resolved/m)
    expect(text).toMatch(/^ {2}processed {3}10 distinct messages by the workers$/m)
    expect(text).toMatch(/^ {2}lost {8}0: every message whose send\(\) resolved was processed$/m)
    expect(text).toMatch(/^ {2}duplicates {2}0$/m)
    expect(flat(text)).toContain("worker 1: 6 · worker 2: 4 (killed)")
    expect(text.trimEnd().split("\n").at(-1)).toBe("OK: nothing lost.")
  })

  it("a confirmed message that no worker processed is lost, named, and fails the run", () => {
    const processed = processedOnce(10)
    processed.delete(3)
    processed.delete(7)
    const { text, ok } = renderSummary(run({ processed }))
    expect(ok).toBe(false)
    expect(text).toMatch(/^ {2}lost {8}2: #3, #7$/m)
    expect(text.trimEnd().split("\n").at(-1)).toBe("FAILED: 2 messages lost.")
  })

  it("names at most ten lost messages", () => {
    const { text } = renderSummary(run({ total: 20, confirmed: 20, processed: new Map() }))
    expect(flat(text)).toContain("lost 20: #1, #2, #3, #4, #5, #6, #7, #8, #9, #10, …")
  })

  it("messages whose send() never resolved fail the run without counting as lost", () => {
    const { text, ok } = renderSummary(run({ confirmed: 8, processed: processedOnce(8) }))
    expect(ok).toBe(false)
    expect(text).toMatch(/^ {2}lost {8}0: /m)
    expect(text).toMatch(/\(2 more were never confirmed as sent\)/)
    expect(text.trimEnd().split("\n").at(-1)).toBe("FAILED: 2 messages never confirmed.")
  })

  it("explains each duplicate by its copies: resent, redelivered from the journal, requeued", () => {
    const processed = processedOnce(10)
    processed.set(1, [
      { id: "m1", attempt: 1 },
      { id: "m1-again", attempt: 1 }, // two ids: the producer sent it twice
    ])
    processed.set(2, [
      { id: "m2", attempt: 1 },
      { id: "m2", attempt: 1 }, // the same attempt twice: from the restarted sender's journal
    ])
    processed.set(3, [
      { id: "m3", attempt: 1 },
      { id: "m3", attempt: 2 }, // a higher attempt: requeued after a lost worker
    ])
    processed.set(4, [
      { id: "m4", attempt: 1 },
      { id: "m4", attempt: 2 },
      { id: "m4", attempt: 3 },
    ])
    const { text, ok } = renderSummary(run({ processed }))
    expect(ok).toBe(true)
    const summary = flat(text)
    expect(summary).toContain(
      "duplicates 4 messages processed more than once (5 extra runs), as at-least-once delivery allows:",
    )
    expect(summary).toContain("- 1 in flight when the sender was killed")
    expect(summary).toContain("so the restarted sender redelivered it")
    expect(summary).toContain("- 2 in flight at the killed worker")
    expect(summary).toContain("so the sender gave them to another worker")
    expect(summary).toContain("- 1 sent twice by the producer")
  })

  it("reports the faults, and warns about a child that crashed while closing", () => {
    const { text } = renderSummary(
      run({
        faults: {
          worker: { name: "worker 2", pid: 42, at: 1.5, requeued: 3, replacement: "worker 3" },
          sender: { pid: 43, at: 2.5, confirmed: 6, back: 0.4, recovered: 2 },
        },
        closedSenders: [{ name: "sender", killed: false, exit: "SIGSEGV", processed: 0 }],
      }),
    )
    const summary = flat(text)
    expect(summary).toMatch(
      /worker 2 killed with SIGKILL; the sender requeued its 3 unacked messages; worker 3 replaced it/,
    )
    expect(summary).toMatch(
      /the sender killed with SIGKILL after send\(\) #6; back [\d.]+ s later on the same journal, it redelivered the 2 unacked messages it held/,
    )
    expect(summary).toContain("warning sender crashed while closing cleanly at the end (SIGSEGV)")
  })
})
