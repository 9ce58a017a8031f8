/**
 * The raw zeromq.js baseline of the benchmarks: payloads one-way from a DEALER in this process to
 * a ROUTER in a child (bench/fixtures/raw-sink.ts) that counts them, each send awaited.
 */
import { Dealer } from "zeromq"
import { forkFixture, type Child } from "./children.js"
import { round } from "./stats.js"

export interface Sink {
  child: Child
  dealer: Dealer
}

/** What one run of the baseline measured. */
export interface SinkResult {
  n: number
  ms: number
  msgsPerSec: number
  /** CPU time of this process (user + system, every thread) per message, µs. */
  cpuUsPerMsg: number
  /** CPU time of the sink process per message, µs. */
  peerCpuUsPerMsg: number
}

export async function openSink(): Promise<Sink> {
  const child = forkFixture("raw-sink.ts", [])
  const { endpoint } = await child.next<{ type: string; endpoint: string }>(
    (m) => m.type === "ready",
    30_000,
    "raw-sink ready",
  )
  const dealer = new Dealer({ linger: 0, sendTimeout: 10_000, receiveTimeout: 60_000 })
  dealer.connect(endpoint)
  return { child, dealer }
}

async function sinkCpu(sink: Sink): Promise<number> {
  const answer = sink.child.next<{ type: string; us: number }>(
    (m) => m.type === "cpu",
    5000,
    "raw-sink cpu",
  )
  sink.child.send({ type: "cpu" })
  return (await answer).us
}

/** Sends n payloads (cycling through `bodies`) one-way; `name` names the case in errors. */
export async function rawOneWay(
  sink: Sink,
  n: number,
  bodies: readonly Buffer[],
  name: string,
): Promise<SinkResult> {
  const peer0 = await sinkCpu(sink)
  const cpu = process.cpuUsage()
  const start = performance.now()
  for (let i = 0; i < n; i++) await sink.dealer.send(bodies[i % bodies.length] as Buffer)
  await sink.dealer.send("END")
  const [count] = await sink.dealer.receive()
  const ms = performance.now() - start
  const used = process.cpuUsage(cpu)
  const peer = (await sinkCpu(sink)) - peer0
  if (Number(count?.toString()) !== n)
    throw new Error(`${name}: the sink counted ${count?.toString() ?? "?"} of ${n}`)
  return {
    n,
    ms: round(ms, 1),
    msgsPerSec: Math.round((n * 1000) / ms),
    cpuUsPerMsg: round((used.user + used.system) / n, 2),
    peerCpuUsPerMsg: round(peer / n, 2),
  }
}
