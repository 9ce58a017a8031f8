/**
 * `pirate demo` end to end, as a user runs it (`node bin/pirate.js demo`), small and without a
 * terminal: a worker and the sender are SIGKILLed mid-stream and nothing may be lost. What was
 * processed is counted from the workers' own records (PIRATE_DEMO_RECORD), not taken from the
 * demo's verdict; the summary's wording is tested on its own in demo-summary.test.ts.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { describe, expect, it, type TestContext } from "vitest"
import { pirate, workerRecords } from "../helpers/demo.js"

/**
 * The processes of the group led by `pid` (the demo's children) that still run. A zombie does not
 * count: it has exited, and only waits for its parent to collect its status. tsx's esbuild service
 * processes end up so once the process that started them exits, reparented to PID 1, which in a
 * container may never reap them.
 */
function groupLeft(pid: number): string[] {
  const left: string[] = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8")
    } catch {
      continue // exited while we looked
    }
    // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
    const close = stat.lastIndexOf(")")
    const [state, , pgrp] = stat.slice(close + 2).split(" ")
    if (Number(pgrp) === pid && state !== "Z") left.push(`${entry} ${stat.slice(0, close + 1)}`)
  }
  return left
}

/** A folder for the workers' records (PIRATE_DEMO_RECORD), removed when the test finishes. */
async function recordFolder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-demo-records-"))
  t.onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Message numbers 1…`total` that no worker recorded, and recorded ones outside that range. */
function unaccounted(
  runs: Map<number, number>,
  total: number,
): { lost: number[]; stray: number[] } {
  const lost: number[] = []
  for (let n = 1; n <= total; n++) if (!runs.has(n)) lost.push(n)
  const stray = [...runs.keys()].filter((n) => n < 1 || n > total)
  return { lost, stray }
}

/** The demo's temporary folder, as its header names it. */
function journalFolder(stdout: string): string {
  const match = /^ {2}journal {2}(.+)$/m.exec(stdout)
  expect(match, stdout).not.toBeNull()
  return dirname((match as RegExpExecArray)[1] as string)
}

describe("pirate demo", () => {
  it("survives a SIGKILLed worker and a SIGKILLed sender without losing a message", async (t) => {
    const records = await recordFolder(t)
    const run = await pirate(t, ["demo", "--messages", "2000"], {
      env: { PIRATE_DEMO_RECORD: records },
    })
    expect(run.stderr).toBe("")
    expect(run.code, run.stdout).toBe(0)

    // Every message was processed, by the workers' own account.
    const runs = workerRecords(records)
    expect(unaccounted(runs, 2000)).toEqual({ lost: [], stray: [] })
    const duplicated = [...runs.values()].filter((r) => r > 1).length

    const out = run.stdout
    // Not a terminal: plain lines, no cursor movement.
    expect(out).not.toContain("\u001b[")
    // The faults were injected, and recovered from.
    expect(out).toMatch(/SIGKILL worker 2 \(pid \d+\)/)
    expect(out).toMatch(/started worker 4 to replace it/)
    expect(out).toMatch(/SIGKILL the sender \(pid \d+\)/)
    expect(out).toMatch(/restarted the sender \(pid \d+\) on the same journal/)
    expect(out).toMatch(/its journal held [\d,]+ unacked messages/)

    const summary = out.slice(out.indexOf("\nSummary\n"))
    // The summary wraps long lines: look for phrases with the line breaks taken out.
    const flat = summary.replace(/\s+/g, " ")
    expect(summary).toMatch(/^ {2}sent {8}2,000 messages/m)
    // The summary tells what the records show. A worker killed between its record and its
    // report to the demo makes a duplicate the demo cannot see: at most that one's concurrency.
    expect(summary).toMatch(/^ {2}processed {3}2,000 distinct messages/m)
    expect(summary).toMatch(/^ {2}lost {8}0: /m)
    const reported = /^ {2}duplicates {2}([\d,]+)/m.exec(summary)
    expect(reported, summary).not.toBeNull()
    const reportedDuplicates = Number((reported as RegExpExecArray)[1]?.replace(/,/g, ""))
    expect(reportedDuplicates).toBeLessThanOrEqual(duplicated)
    expect(duplicated - reportedDuplicates).toBeLessThanOrEqual(4)
    expect(flat).toMatch(/worker 2 killed with SIGKILL/)
    expect(flat).toMatch(
      /the sender killed with SIGKILL after send\(\) #[\d,]+; back [\d.]+ s later/,
    )
    expect(flat).toMatch(/worker 2: [\d,]+ \(killed\)/)
    expect(flat).toMatch(/OK: nothing lost\./)

    // No child process is left, and the temporary journal folder is gone.
    expect(groupLeft(run.pid)).toEqual([])
    expect(existsSync(journalFolder(out))).toBe(false)
  }, 25_000)

  // Small ones, at the same time.
  it.concurrent(
    "prints only the summary with --quiet",
    async (t) => {
      const records = await recordFolder(t)
      const run = await pirate(t, ["demo", "--messages", "300", "--workers", "2", "--quiet"], {
        env: { PIRATE_DEMO_RECORD: records },
      })
      expect(run.code, run.stdout + run.stderr).toBe(0)
      expect(run.stdout.trimStart()).toMatch(/^Summary\n/)
      expect(unaccounted(workerRecords(records), 300)).toEqual({ lost: [], stray: [] })
    },
    40_000,
  )

  it.concurrent(
    "ends its children and removes its folder on Ctrl-C (SIGINT)",
    async (t) => {
      const run = await pirate(t, ["demo", "--messages", "200000"], {
        interruptAfter: /workers connected/,
      })
      expect(run.code).toBe(130)
      expect(run.stdout).toMatch(/interrupted by SIGINT/)
      expect(groupLeft(run.pid)).toEqual([])
      expect(existsSync(journalFolder(run.stdout))).toBe(false)
    },
    40_000,
  )

  it.concurrent("rejects bad options with exit status 2", async (t) => {
    const run = await pirate(t, ["demo", "--messages", "0"])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/--messages must be at least 1/)
  })
})
