/**
 * The catch-up case of bench/pair.ts: the primary here with CATCHUP pending messages, the backup
 * returning with an empty journal in a child process; the time until it holds a full copy, and
 * its peak RSS.
 */
import { rm } from "node:fs/promises"
import type { Sender as SenderType } from "../../patterns/index.js"
import { printLine } from "../lib/env.js"
import { median, medianOf, round } from "../lib/stats.js"
import { removeDir } from "../lib/temp-dirs.js"
import {
  closeNode,
  nodeStats,
  openPrimary,
  pairConfig,
  pairUp,
  startNode,
  until,
  type Opened,
  type Proc,
} from "./nodes.js"
import {
  BENCH,
  BODIES,
  CATCHUP,
  CATCHUP_RSS_TARGET_MB,
  CATCHUP_RUNS,
  POOL,
  PUBLISH_BATCH,
  SIZE,
  wanted,
  type Result,
} from "./settings.js"
import { cpuPerMsg } from "./throughput.js"

async function catchup(run: number): Promise<Result> {
  const pair = await pairConfig("pair-catchup")
  let backup: Proc | undefined = startNode(pair.backup)
  let primary: SenderType | undefined
  try {
    primary = await openPrimary(pair.primary, "local")
    await pairUp(primary, backup)
    // The backup goes (SIGKILL); the primary, alone, resolves its sends locally ("local") once it
    // has noticed (pair.timeout); no worker: they all stay pending.
    await backup.child.kill("SIGKILL")
    backup = undefined
    const fillStart = performance.now()
    for (let i = 0; i < CATCHUP;) {
      const sends: Promise<string>[] = []
      for (const end = Math.min(CATCHUP, i + PUBLISH_BATCH); i < end; i++)
        sends.push(primary.send(BODIES[i % POOL]))
      await Promise.all(sends)
    }
    const fillMs = performance.now() - fillStart
    const { backlog, inWindow } = primary.stats()
    if (backlog + inWindow !== CATCHUP)
      throw new Error(`catchup: ${backlog + inWindow} of ${CATCHUP} pending on the primary`)
    if (primary.stats().pair?.replicated !== false) throw new Error("catchup: replicated alone?")
    // The backup's disk is gone: it returns empty, and gets a full copy.
    await rm(pair.backup.journal, { recursive: true, force: true })
    const cpu = process.cpuUsage()
    const startedAt = Date.now()
    const startedPerf = performance.now()
    backup = startNode(pair.backup)
    const opened = await backup.next<Opened>("open", 60_000)
    const p = primary
    await until(() => p.stats().pair?.replicated === true, 600_000, "catchup: replicated", 10)
    const ms = performance.now() - startedPerf
    const primaryCpu = process.cpuUsage(cpu)
    const s = await nodeStats(backup)
    return {
      case: "catchup",
      run,
      pending: CATCHUP,
      size: SIZE,
      fillMs: round(fillMs, 1),
      ms: round(ms, 1),
      // From the backup's Sender.open() resolving (its process start and module load excluded).
      fromOpenMs: round(ms - (opened.at - startedAt), 1),
      backupOpenMs: round(opened.openMs, 1),
      msgsPerSec: Math.round((CATCHUP * 1000) / ms),
      primaryCpuUsPerMsg: cpuPerMsg(primaryCpu, CATCHUP),
      backupCpuUsPerMsg: round(s.cpuUs / CATCHUP, 2),
      peakRssMb: s.peakRssMb,
      peakAnonMb: s.peakAnonMb,
      maxRssMb: s.maxRssMb,
      rssAfterMb: s.rssMb,
    }
  } finally {
    await primary?.close()
    if (backup !== undefined) await closeNode(backup)
    await removeDir(pair.dir)
  }
}

export async function catchups(): Promise<void> {
  if (!wanted("catchup")) return
  const rs: Result[] = []
  for (let run = 1; run <= CATCHUP_RUNS; run++) {
    const r = await catchup(run)
    rs.push(r)
    printLine({ bench: BENCH, ...r })
  }
  const worst = Math.max(...rs.map((r) => r["maxRssMb"] as number))
  printLine({
    bench: BENCH,
    case: "catchup",
    stat: "median",
    runs: rs.length,
    pending: CATCHUP,
    size: SIZE,
    msgsPerSec: Math.round(median(rs.map((r) => r["msgsPerSec"] as number))),
    ...medianOf(rs, [
      "ms",
      "fromOpenMs",
      "primaryCpuUsPerMsg",
      "backupCpuUsPerMsg",
      "peakRssMb",
      "peakAnonMb",
      "maxRssMb",
    ]),
    // The kernel's peak RSS of the backup process, the highest of the runs.
    maxRssMbWorst: worst,
    target: `backup peak RSS < ${CATCHUP_RSS_TARGET_MB} MB`,
    meetsTarget: worst < CATCHUP_RSS_TARGET_MB,
  })
}
