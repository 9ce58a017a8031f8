/**
 * The `pirate demo` CLI end to end, as a user runs it (test/patterns/demo.test.ts,
 * demo-pair.test.ts): run it to its end, and read what its workers recorded (PIRATE_DEMO_RECORD).
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { expect, type TestContext } from "vitest"

const PIRATE = fileURLToPath(new URL("../../bin/pirate.js", import.meta.url))

export interface Run {
  pid: number
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * Runs the CLI to its end in a process group of its own (its children join it), which is killed
 * if the test ends first. `interruptAfter`: Ctrl-C (SIGINT to the group) once stdout matches.
 */
export async function pirate(
  t: TestContext,
  args: string[],
  options: { interruptAfter?: RegExp | undefined; env?: Record<string, string> } = {},
): Promise<Run> {
  const child = spawn(process.execPath, [PIRATE, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NODE_DEBUG: "", ...options.env },
    detached: true,
  })
  const pid = child.pid as number
  const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>
  // The context's hook: with concurrent tests the global one may belong to another test.
  t.onTestFinished(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    try {
      process.kill(-pid, "SIGKILL")
    } catch {
      /* already gone */
    }
    await exited
  })
  let stdout = ""
  let stderr = ""
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk
    if (options.interruptAfter?.test(stdout)) {
      options.interruptAfter = undefined
      process.kill(-pid, "SIGINT")
    }
  })
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const [code, signal] = await exited
  return { pid, code, signal, stdout, stderr }
}

/**
 * What the workers wrote in `dir`, each line `n id attempt` appended before its ack left: how
 * many times each message number was processed.
 */
export function workerRecords(dir: string): Map<number, number> {
  const runs = new Map<number, number>()
  const files = readdirSync(dir)
  expect(files.length, "every worker keeps a record").toBeGreaterThan(0)
  for (const file of files) {
    for (const line of readFileSync(join(dir, file), "utf8").split("\n")) {
      if (line === "") continue
      const n = Number(line.split(" ")[0])
      expect(Number.isInteger(n), `${file}: ${line}`).toBe(true)
      runs.set(n, (runs.get(n) ?? 0) + 1)
    }
  }
  return runs
}
