/**
 * Sender pairs in child processes (test/fixtures/pair-sender.ts) with workers that log what they
 * handle (test/fixtures/pair-worker.ts). A pair's addresses must be known before either node
 * binds (each names the other), and a restarted node binds them again: the ports are picked free
 * by the system once per test (bin/demo/ports.ts, {@link freePorts}), never fixed.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { onTestFinished } from "vitest"
import { freePorts, pairAddresses, type PairNodeAddresses } from "../../bin/demo/ports.js"
import { forkFixture, type Child } from "./processes.js"

export { freePorts }

export interface NodeConfig extends PairNodeAddresses {
  heartbeatInterval?: number
  timeout?: number
  whenAlone?: "wait" | "local"
  sync?: boolean
  durability?: "replicated" | "os"
}

export interface PairSetup {
  dir: string
  primary: NodeConfig
  backup: NodeConfig
  /** The two worker endpoints, the primary's first. */
  endpoints: [string, string]
  logs: string[]
}

/** Addresses and journal directories of a pair on this machine (removed when the test ends). */
export async function pairSetup(options: Partial<NodeConfig> = {}): Promise<PairSetup> {
  const dir = mkdtempSync(join(tmpdir(), "pirate-pair-"))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const addresses = await pairAddresses(dir)
  const common = { heartbeatInterval: 100, ...options }
  return {
    dir,
    primary: { ...common, ...addresses.primary },
    backup: { ...common, ...addresses.backup },
    endpoints: [addresses.primary.bind, addresses.backup.bind],
    logs: [],
  }
}

export function startNode(config: NodeConfig): Child {
  return forkFixture("pair-sender.ts", [JSON.stringify(config)])
}

export async function startWorker(setup: PairSetup, extra: object = {}): Promise<Child> {
  const log = join(setup.dir, `worker-${setup.logs.length}.log`)
  setup.logs.push(log)
  const child = forkFixture("pair-worker.ts", [
    JSON.stringify({ connect: setup.endpoints, log, ...extra }),
  ])
  await child.waitFor((m) => m["type"] === "ready", 15_000)
  return child
}

/** How many times each seq was handled, over every worker's log. */
export function handled(setup: PairSetup): Map<number, number> {
  const counts = new Map<number, number>()
  for (const log of setup.logs) {
    if (!existsSync(log)) continue
    for (const line of readFileSync(log, "utf8").split("\n")) {
      if (line === "") continue
      const seq = Number(line)
      counts.set(seq, (counts.get(seq) ?? 0) + 1)
    }
  }
  return counts
}

/** The seqs a node reported resolved (its `resolved` messages), as [from, to) ranges. */
export function resolvedRanges(child: Child): [number, number][] {
  return child.messages
    .filter((m) => m["type"] === "resolved")
    .map((m) => [m["from"] as number, m["to"] as number])
}

/** The first seq in `ranges` that no worker handled, or undefined. */
export function firstMissing(
  ranges: [number, number][],
  counts: Map<number, number>,
): number | undefined {
  for (const [from, to] of ranges) for (let s = from; s < to; s++) if (!counts.has(s)) return s
  return undefined
}

/** Resolves with the node's next `state` message to `state` (after those already seen). */
export function nextState(
  child: Child,
  state: "active" | "passive",
  timeoutMs = 15_000,
): Promise<Record<string, unknown>> {
  const seen = child.messages.length
  return child.waitFor(
    (m) => m["type"] === "state" && m["state"] === state && child.messages.indexOf(m) >= seen,
    timeoutMs,
  )
}
