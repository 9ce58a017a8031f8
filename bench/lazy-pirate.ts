/**
 * How much does Lazy Pirate add to a request round trip? LazyPirateClient ↔ LazyPirateServer
 * (msgpack + LPX/1 framing, and codec "raw") against raw zeromq.js REQ/REP, each server in a
 * child process of its own.
 *
 *   npx tsx bench/lazy-pirate.ts          env: N (default 5000), SIZE (256), RUNS (5), WARMUP (500)
 *
 * Prints one JSON line per case per run, then one per case with the medians over RUNS and the
 * ratio of its p50 to the raw REQ/REP p50.
 */
import { fork, type ChildProcess } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { Reply, Request } from "zeromq"
import { loadLibrary } from "./lib/compiled.js"
import { envInt } from "./lib/env.js"
import { median } from "./lib/stats.js"

const { LazyPirateClient, LazyPirateServer } = await loadLibrary()

const BIND = "tcp://127.0.0.1:*"

type Role = "lp-server" | "lp-raw-server" | "rep-server"

interface Case {
  name: string
  server: Role
  /** Makes a client; returns its request function and how to close it. */
  client(endpoint: string): Promise<{ request(payload: Buffer): Promise<unknown>; close(): void }>
}

const CASES: Case[] = [
  {
    name: "zeromq-req-rep",
    server: "rep-server",
    client: async (endpoint) => {
      const sock = new Request({ linger: 0 })
      sock.connect(endpoint)
      return {
        request: async (payload) => {
          await sock.send(payload)
          const [reply] = await sock.receive()
          return reply
        },
        close: () => sock.close(),
      }
    },
  },
  {
    name: "lazy-pirate",
    server: "lp-server",
    client: async (endpoint) => {
      const client = await LazyPirateClient.open({ connect: endpoint })
      return { request: (payload) => client.request(payload), close: () => void client.close() }
    },
  },
  {
    name: "lazy-pirate-raw",
    server: "lp-raw-server",
    client: async (endpoint) => {
      const client = await LazyPirateClient.open({ connect: endpoint, codec: "raw" })
      return { request: (payload) => client.request(payload), close: () => void client.close() }
    },
  },
]

async function serve(role: Role): Promise<void> {
  let endpoint: string
  let close: () => Promise<void>
  if (role === "rep-server") {
    const sock = new Reply({ linger: 0 })
    await sock.bind(BIND)
    endpoint = sock.lastEndpoint ?? BIND
    const loop = (async () => {
      for await (const msg of sock) await sock.send(msg)
    })().catch(() => undefined)
    close = async () => {
      sock.close()
      await loop
    }
  } else {
    const server = await LazyPirateServer.open({
      bind: BIND,
      codec: role === "lp-raw-server" ? "raw" : "msgpack",
      handler: (payload) => payload,
    })
    endpoint = server.endpoint
    close = () => server.close()
  }
  process.once("disconnect", () => void close().finally(() => process.exit(0)))
  process.send?.({ endpoint })
}

async function startServer(role: Role): Promise<{ child: ChildProcess; endpoint: string }> {
  const child = fork(fileURLToPath(import.meta.url), [role], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  })
  const [msg] = (await once(child, "message")) as [{ endpoint: string }]
  return { child, endpoint: msg.endpoint }
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits

async function main(): Promise<void> {
  const N = envInt("N", 5000)
  const SIZE = envInt("SIZE", 256)
  const RUNS = envInt("RUNS", 5)
  const WARMUP = envInt("WARMUP", 500)
  const payload = Buffer.alloc(SIZE, 0x61)
  const servers = new Map<Role, { child: ChildProcess; endpoint: string }>()
  for (const c of CASES) servers.set(c.server, await startServer(c.server))
  const results = new Map<string, { p50: number[]; p99: number[]; rps: number[] }>()
  const times = new Float64Array(N)
  try {
    for (let run = 1; run <= RUNS; run++) {
      // Cases take turns within each run, starting with a different one each run, so that
      // drift of the machine (frequency scaling, other load) hits them alike.
      for (let k = 0; k < CASES.length; k++) {
        const c = CASES[(run - 1 + k) % CASES.length] as Case
        const client = await c.client((servers.get(c.server) as { endpoint: string }).endpoint)
        for (let i = 0; i < WARMUP; i++) await client.request(payload)
        const start = performance.now()
        for (let i = 0; i < N; i++) {
          const t0 = performance.now()
          await client.request(payload)
          times[i] = performance.now() - t0
        }
        const total = performance.now() - start
        client.close()
        times.sort()
        const line = {
          case: c.name,
          run,
          n: N,
          size: SIZE,
          p50_us: round(quantile(times, 0.5) * 1000),
          p99_us: round(quantile(times, 0.99) * 1000),
          rps: Math.round(N / (total / 1000)),
        }
        console.log(JSON.stringify(line))
        const r = results.get(c.name) ?? { p50: [], p99: [], rps: [] }
        r.p50.push(line.p50_us)
        r.p99.push(line.p99_us)
        r.rps.push(line.rps)
        results.set(c.name, r)
      }
    }
    const rawP50 = median(results.get("zeromq-req-rep")?.p50 ?? [NaN])
    for (const [name, r] of results) {
      const p50 = median(r.p50)
      console.log(
        JSON.stringify({
          case: name,
          summary: "median",
          runs: RUNS,
          n: N,
          size: SIZE,
          p50_us: round(p50),
          p99_us: round(median(r.p99)),
          rps: Math.round(median(r.rps)),
          ratio_p50: round(p50 / rawP50, 3),
        }),
      )
    }
  } finally {
    for (const { child } of servers.values()) {
      const exited = once(child, "exit")
      child.disconnect()
      await exited
    }
  }
}

const role = process.argv[2] as Role | undefined
if (role === undefined) {
  await main()
} else {
  await serve(role)
}
