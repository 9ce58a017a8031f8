/**
 * Sender pairs in child processes (test/fixtures/pair-sender.ts) with workers that log what they
 * handle (test/fixtures/pair-worker.ts). A pair's addresses must be known before either node
 * binds (each names the other), and a restarted node binds them again: the ports are picked free
 * by the system once per test ({@link freePorts}), never fixed.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { onTestFinished } from "vitest"
import { forkFixture, type Child } from "./processes.js"

/** `n` distinct TCP ports on 127.0.0.1 that the system had free a moment ago. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer()
          server.once("error", reject)
          server.listen(0, "127.0.0.1", () => resolve(server))
        }),
    ),
  )
  const ports = servers.map((s) => (s.address() as AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  return ports
}

export interface NodeConfig {
  role: "primary" | "backup"
  journal: string
  bind: string
  pairBind: string
  peer: string
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
  const [pw, pp, bw, bp] = (await freePorts(4)) as [number, number, number, number]
  const at = (port: number): string => `tcp://127.0.0.1:${port}`
  const common = { heartbeatInterval: 100, ...options }
  return {
    dir,
    primary: {
      ...common,
      role: "primary",
      journal: join(dir, "primary"),
      bind: at(pw),
      pairBind: at(pp),
      peer: at(bp),
    },
    backup: {
      ...common,
      role: "backup",
      journal: join(dir, "backup"),
      bind: at(bw),
      pairBind: at(bp),
      peer: at(pp),
    },
    endpoints: [at(pw), at(bw)],
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
