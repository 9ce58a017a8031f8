/**
 * The failover cases of bench/pair.ts (`failover`, `failover-short`): both senders of a pair in
 * child processes under a light load; KILLS times the active is SIGKILLed, the passive takes
 * over, and the killed node returns as passive and catches up.
 */
import { sleep } from "../lib/children.js"
import { printLine } from "../lib/env.js"
import { max, median, percentile, round } from "../lib/stats.js"
import { removeDir } from "../lib/temp-dirs.js"
import {
  closeWorkers,
  connectWorkers,
  nodeStats,
  pairConfig,
  startNode,
  startWorkers,
  untilAsync,
  type NodeConfig,
  type Opened,
  type Proc,
  type StateMsg,
} from "./nodes.js"
import {
  BENCH,
  FAILOVER_SLACK,
  FAILOVERS,
  KILLS,
  STREAM_BATCH,
  STREAM_PAUSE_MS,
  WORKERS,
  type Result,
} from "./settings.js"

export async function failover(spec: (typeof FAILOVERS)[number]): Promise<void> {
  const pair = await pairConfig(spec.name, {
    heartbeatInterval: spec.heartbeatInterval,
    timeout: spec.timeout,
  })
  const workers = startWorkers()
  const nodes: Proc[] = []
  try {
    await Promise.all(workers.map((w) => w.next("started", 30_000)))
    const start = (config: NodeConfig): Proc => {
      const node = startNode(config)
      nodes.push(node)
      return node
    }
    let active = start(pair.primary)
    let passive = start(pair.backup)
    let activeConfig = pair.primary
    let passiveConfig = pair.backup
    const [a, b] = await Promise.all([
      active.next<Opened>("open", 30_000),
      passive.next<Opened>("open", 30_000),
    ])
    await Promise.all([
      active.next<StateMsg>("state", 30_000, (m) => m.state === "active"),
      passive.next<StateMsg>("state", 30_000, (m) => m.state === "passive"),
      active.next("replicated", 30_000),
    ])
    await connectWorkers(workers, [a.endpoint, b.endpoint], spec.heartbeatInterval)
    const stream = (node: Proc): void =>
      node.send({ type: "stream", batch: STREAM_BATCH, pauseMs: STREAM_PAUSE_MS })
    stream(active)
    const rs: Result[] = []
    for (let kill = 1; kill <= KILLS; kill++) {
      // The load has run a while on this active, and the passive holds its worker sessions.
      await sleep(Math.max(500, spec.timeout / 2))
      const ps = await nodeStats(passive)
      if (ps.stats.workers < WORKERS)
        throw new Error(`${spec.name}: the passive has ${ps.stats.workers} workers`)
      const takeover = passive.next<StateMsg>("state", 60_000, (m) => m.state === "active")
      const killedAt = Date.now()
      const killedPerf = performance.now()
      await active.child.kill("SIGKILL")
      const took = await takeover
      const tookPerf = performance.now()
      // The killed node returns on the same ports and journal, becomes passive, catches up.
      const restartedAt = Date.now()
      const returned = start(activeConfig)
      const replicated = passive.next<{ type: "replicated"; at: number }>(
        "replicated",
        120_000,
        (m) => (m as unknown as { replicated: boolean }).replicated,
      )
      stream(passive)
      const back = await returned.next<StateMsg>("state", 60_000, (m) => m.state === "passive")
      const caughtUp = await replicated
      // It has its worker sessions again (the workers reconnect after their backoff).
      await untilAsync(
        async () => (await nodeStats(returned)).stats.workers >= WORKERS,
        60_000,
        `${spec.name}: workers back on the restarted node`,
      )
      const r: Result = {
        case: spec.name,
        kill,
        heartbeatInterval: spec.heartbeatInterval,
        timeout: spec.timeout,
        // The passive's own Date.now() at pair:active − this process's Date.now() at the kill
        // (the same machine's wall clock: no monotonic clock is shared by two processes).
        failoverMs: took.at - killedAt,
        // This process's clock: the kill → the IPC message of the takeover received here.
        failoverReceivedMs: round(tookPerf - killedPerf, 1),
        reason: took.reason,
        epoch: took.epoch,
        rejoinMs: back.at - restartedAt,
        catchUpMs: caughtUp.at - restartedAt,
      }
      rs.push(r)
      printLine({ bench: BENCH, ...r })
      ;[active, passive] = [passive, returned]
      ;[activeConfig, passiveConfig] = [passiveConfig, activeConfig]
    }
    active.send({ type: "stop" })
    const closed = await closeWorkers(workers)
    const ms = rs.map((r) => r["failoverMs"] as number)
    const received = rs.map((r) => r["failoverReceivedMs"] as number)
    const p50 = percentile(ms, 50)
    const target = spec.timeout + FAILOVER_SLACK
    printLine({
      bench: BENCH,
      case: spec.name,
      stat: "median",
      // First, so that bench/run.ts's table shows them (its notes take the first numeric fields).
      failoverP50Ms: p50,
      failoverMaxMs: max(ms),
      kills: rs.length,
      timeout: spec.timeout,
      heartbeatInterval: spec.heartbeatInterval,
      failoverMinMs: Math.min(...ms),
      p50ReceivedMs: round(percentile(received, 50), 1),
      maxReceivedMs: round(max(received), 1),
      rejoinP50ms: median(rs.map((r) => r["rejoinMs"] as number)),
      catchUpP50ms: median(rs.map((r) => r["catchUpMs"] as number)),
      reasons: [...new Set(rs.map((r) => r["reason"]))],
      votes: closed.reduce((a, c) => a + c.votes, 0),
      handled: closed.reduce((a, c) => a + c.handled, 0),
      target: `p50 ≤ pair.timeout + ${FAILOVER_SLACK} ms (${target} ms)`,
      meetsTarget: p50 <= target,
    })
  } finally {
    await Promise.all(nodes.map((n) => n.child.kill()))
    await Promise.all(workers.map((w) => w.child.end()))
    await removeDir(pair.dir)
  }
}
