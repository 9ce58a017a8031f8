/**
 * The processes of bench/pair.ts: senders of a pair and workers in child processes
 * (bench/pair-fixtures/), driven over IPC; a pair's addresses (free ports named before either
 * binds: bin/demo/ports.ts); a pair's primary in this process, and waiting until the pair is up.
 */
import { pairAddresses, type PairNodeAddresses } from "../../bin/demo/ports.js"
import type { Sender as SenderType } from "../../patterns/index.js"
import { forkModule, sleep, type Child } from "../lib/children.js"
import { loadLibrary } from "../lib/compiled.js"
import { tempDir } from "../lib/temp-dirs.js"
import { CONCURRENCY, SIZE, WORKERS } from "./settings.js"

const { Sender } = await loadLibrary()

export interface Proc {
  readonly child: Child
  next<T extends { type: string }>(
    type: string,
    ms: number,
    match?: (m: T) => boolean,
  ): Promise<T & { receivedAt: number }>
  send(message: object): void
}

/** Forks `bench/pair-fixtures/<file>`, compiled; its `error` messages go to stderr. */
export function fork(file: string, args: string[]): Proc {
  const child = forkModule(new URL(`../pair-fixtures/${file}`, import.meta.url), args)
  child.process.on("message", (m: { type: string; message?: string; code?: string }) => {
    if (m.type === "error")
      process.stderr.write(`${file} (${String(child.pid)}): ${m.code ?? ""} ${m.message ?? "?"}\n`)
  })
  return {
    child,
    // `receivedAt`: Date.now() when the message arrived here (stamped by the match itself).
    next: async <T extends { type: string }>(
      type: string,
      ms: number,
      match?: (m: T) => boolean,
    ) => {
      let receivedAt = 0
      const m = await child.next<T>(
        (x) => {
          const ok = x.type === type && (match === undefined || match(x))
          if (ok) receivedAt = Date.now()
          return ok
        },
        ms,
        `"${type}" from ${file}`,
      )
      return { ...m, receivedAt: receivedAt || Date.now() }
    },
    send: (message) => child.send(message),
  }
}

export interface NodeConfig extends PairNodeAddresses {
  heartbeatInterval?: number
  timeout?: number
  whenAlone?: "wait" | "local"
  /** "replicated" by default. */
  durability?: "replicated" | "os"
  size?: number
}

export interface Opened {
  type: "open"
  at: number
  openMs: number
  endpoint: string
}
export interface StateMsg {
  type: "state"
  state: "active" | "passive"
  epoch: number
  reason: string
  at: number
}
export interface NodeStats {
  type: "stats"
  stats: ReturnType<SenderType["stats"]>
  cpuUs: number
  rssMb: number
  peakRssMb: number
  peakAnonMb: number
  maxRssMb: number
}

export function startNode(config: NodeConfig): Proc {
  return fork("node.ts", [JSON.stringify({ size: SIZE, ...config })])
}

export async function nodeStats(node: Proc): Promise<NodeStats> {
  const reply = node.next<NodeStats>("stats", 10_000)
  node.send({ type: "stats" })
  return reply
}

export async function closeNode(node: Proc): Promise<void> {
  const closed = node.next("closed", 10_000).catch(() => undefined)
  node.send({ type: "close" })
  await closed
  // It exits by itself (writing its CPU profile when asked to); SIGKILL if it has not within 2 s.
  await node.child.end()
}

export function startWorkers(): Proc[] {
  return Array.from({ length: WORKERS }, () =>
    fork("worker.ts", [JSON.stringify({ concurrency: CONCURRENCY, prefetch: CONCURRENCY })]),
  )
}

/** Connects every worker to `endpoints`; resolves once every sender answered every worker. */
export async function connectWorkers(
  workers: Proc[],
  endpoints: string[],
  heartbeatInterval?: number,
): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      const connected = w.next("connected", 10_000)
      const ready = endpoints.map((e) =>
        w.next<{ type: "ready"; endpoint: string }>("ready", 30_000, (m) => m.endpoint === e),
      )
      w.send({
        type: "connect",
        endpoints,
        ...(heartbeatInterval !== undefined ? { heartbeatInterval } : {}),
      })
      await Promise.all([connected, ...ready])
    }),
  )
}

export interface Closed {
  type: "closed"
  cpuUs: number
  handled: number
  votes: number
}

export async function closeWorkers(workers: Proc[]): Promise<Closed[]> {
  return Promise.all(
    workers.map(async (w) => {
      const reply = w.next<Closed>("closed", 15_000)
      w.send({ type: "close" })
      return reply
    }),
  )
}

export interface Pair {
  dir: string
  primary: NodeConfig
  backup: NodeConfig
}

export async function pairConfig(name: string, options: Partial<NodeConfig> = {}): Promise<Pair> {
  const dir = await tempDir(name)
  const addresses = await pairAddresses(dir)
  return {
    dir,
    primary: { ...options, ...addresses.primary },
    backup: { ...options, ...addresses.backup },
  }
}

/** A pair's primary in this process. */
export async function openPrimary(
  config: NodeConfig,
  whenAlone: "wait" | "local" = "wait",
): Promise<SenderType> {
  return Sender.open({
    bind: config.bind,
    journal: config.journal,
    durability: "replicated",
    pair: { role: "primary", bind: config.pairBind, peer: config.peer, whenAlone },
  })
}

/** Resolves once `cond()` holds (checked every `everyMs`); rejects after `ms`. */
export async function until(
  cond: () => boolean,
  ms: number,
  what: string,
  everyMs = 5,
): Promise<void> {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

/** The primary here active and replicated, the backup (a child) passive. */
export async function pairUp(primary: SenderType, backup: Proc): Promise<void> {
  await backup.next<StateMsg>("state", 30_000, (m) => m.state === "passive")
  await until(
    () => primary.state === "active" && primary.stats().pair?.replicated === true,
    30_000,
    "the primary active with its backup caught up",
  )
}

export async function untilAsync(
  cond: () => Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + ms
  while (!(await cond())) {
    if (performance.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(50)
  }
}
