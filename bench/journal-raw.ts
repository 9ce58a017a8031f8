/**
 * How fast can the sender journal write, and how close is it to raw LevelDB?
 *
 *   npx tsx bench/journal-raw.ts                  # N=50000 SIZE=256 RUNS=5
 *   BIG=1 npx tsx bench/journal-raw.ts            # also: open a journal of 1 000 000 pending
 *   BIG=only npx tsx bench/journal-raw.ts         # only that
 *
 * Cases: LevelJournal.append() in batches of 1, 64 and 1000 (one batch in flight at a time, as
 * the sender's group commit does), with sync false and true; the same batches as raw `level`
 * puts (the ceiling); and append + remove of each batch (a message's whole life in the journal).
 * Synced cases write at most SYNC_BATCHES batches per run (an fsync costs about a millisecond
 * or more). One JSON line per case per run, then one median line per case. `cpuUsPerMsg` (CPU
 * time of the whole process per message) varies less than wall time on a busy machine.
 *
 * With BIG=1 (BIG_N entries, default 1 000 000) a journal is built once in a temp dir, then a
 * fresh process measures open() + the first pending page, paging through everything, and its
 * peak RSS; it also times a key-only count of all entries, which is what open() would cost
 * without the counters stored in the journal.
 */
import { fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Level } from "level"
import { IdGenerator, LevelJournal, type JournalEntry } from "../lib/index.js"
import { median } from "./lib/stats.js"

const N = Number(process.env["N"] ?? 50_000)
const SIZE = Number(process.env["SIZE"] ?? 256)
const RUNS = Number(process.env["RUNS"] ?? 5)
const SYNC_BATCHES = Number(process.env["SYNC_BATCHES"] ?? 1_000)
const BIG = process.env["BIG"] === "1" || process.env["BIG"] === "only"
const BIG_N = Number(process.env["BIG_N"] ?? 1_000_000)
const BATCHES = [1, 64, 1_000]

interface Result {
  case: string
  batch: number
  sync: boolean
  n: number
  size: number
  msgsPerSec: number
  p50us: number
  p99us: number
  /** CPU time of this process (all threads: JS, the write threads, compaction) per message. */
  cpuUsPerMsg: number
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}

function makeEntries(n: number, ids: IdGenerator): JournalEntry[] {
  const payload = randomBytes(SIZE)
  const now = Date.now()
  return Array.from({ length: n }, () => ({
    id: ids.next(),
    payload,
    attempts: 0,
    enqueuedAt: now,
  }))
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** Times `write` per batch; returns throughput and per-batch latency. */
async function timeBatches<T>(
  name: string,
  batch: number,
  sync: boolean,
  batches: T[][],
  write: (b: T[]) => Promise<void>,
): Promise<Result> {
  const latencies: number[] = []
  let n = 0
  const cpu = process.cpuUsage()
  const start = performance.now()
  for (const b of batches) {
    const t = performance.now()
    await write(b)
    latencies.push((performance.now() - t) * 1000)
    n += b.length
  }
  const seconds = (performance.now() - start) / 1000
  const used = process.cpuUsage(cpu)
  latencies.sort((a, b) => a - b)
  return {
    case: name,
    batch,
    sync,
    n,
    size: SIZE,
    msgsPerSec: Math.round(n / seconds),
    p50us: Math.round(quantile(latencies, 0.5)),
    p99us: Math.round(quantile(latencies, 0.99)),
    cpuUsPerMsg: Math.round(((used.user + used.system) / n) * 100) / 100,
  }
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-bench-"))
  try {
    return await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function journalCase(
  batch: number,
  sync: boolean,
  n: number,
  remove: boolean,
): Promise<Result> {
  return withDir(async (dir) => {
    const journal = new LevelJournal(dir)
    await journal.open()
    try {
      const ids = new IdGenerator()
      const batches = chunks(makeEntries(n, ids), batch)
      return await timeBatches(
        remove ? "journal append+remove" : "journal append",
        batch,
        sync,
        batches,
        async (b) => {
          await journal.append(b, { sync })
          if (remove) await journal.remove(b.map((e) => e.id))
        },
      )
    } finally {
      await journal.close()
    }
  })
}

async function rawCase(batch: number, sync: boolean, n: number): Promise<Result> {
  return withDir(async (dir) => {
    const db = new Level<string, Buffer>(dir, { keyEncoding: "utf8", valueEncoding: "buffer" })
    await db.open()
    try {
      const ids = new IdGenerator()
      const value = randomBytes(SIZE + 18) // the journal's value: an 18-byte header + payload
      const ops = Array.from({ length: n }, () => ({
        type: "put" as const,
        key: `p:${ids.next()}`,
        value,
      }))
      return await timeBatches("raw level batch", batch, sync, chunks(ops, batch), (b) =>
        db.batch(b, { sync }),
      )
    } finally {
      await db.close()
    }
  })
}

async function main(): Promise<void> {
  if (process.env["BIG_OPEN"] !== undefined) return bigOpen(process.env["BIG_OPEN"])
  if (process.env["BIG"] === "only") return big()
  const cases: { key: string; run: () => Promise<Result> }[] = []
  for (const sync of [false, true]) {
    for (const batch of BATCHES) {
      const n = sync ? Math.min(N, batch * SYNC_BATCHES) : N
      cases.push({ key: `raw ${batch} ${sync}`, run: () => rawCase(batch, sync, n) })
      cases.push({ key: `journal ${batch} ${sync}`, run: () => journalCase(batch, sync, n, false) })
      cases.push({ key: `cycle ${batch} ${sync}`, run: () => journalCase(batch, sync, n, true) })
    }
  }
  // Warm up the JIT and the file system.
  await journalCase(64, false, Math.min(N, 5_000), true)
  await rawCase(64, false, Math.min(N, 5_000))

  const results = new Map<string, Result[]>()
  for (let run = 1; run <= RUNS; run++) {
    for (const c of cases) {
      const r = await c.run()
      console.log(JSON.stringify({ ...r, run }))
      results.set(c.key, [...(results.get(c.key) ?? []), r])
    }
  }
  for (const rs of results.values()) {
    const first = rs[0]!
    console.log(
      JSON.stringify({
        ...first,
        median: true,
        runs: rs.length,
        msgsPerSec: median(rs.map((r) => r.msgsPerSec)),
        p50us: median(rs.map((r) => r.p50us)),
        p99us: median(rs.map((r) => r.p99us)),
        cpuUsPerMsg: median(rs.map((r) => r.cpuUsPerMsg)),
      }),
    )
  }
  if (BIG) await big()
}

/** Builds a journal of BIG_N pending entries, then measures opening it in a fresh process. */
async function big(): Promise<void> {
  await withDir(async (dir) => {
    const journal = new LevelJournal(dir)
    await journal.open()
    const ids = new IdGenerator()
    const payload = randomBytes(SIZE)
    const start = performance.now()
    for (let i = 0; i < BIG_N; i += 10_000) {
      const now = Date.now()
      const batch = Array.from({ length: Math.min(10_000, BIG_N - i) }, () => ({
        id: ids.next(),
        payload,
        attempts: 0,
        enqueuedAt: now,
      }))
      await journal.append(batch, { sync: false })
    }
    await journal.close()
    const buildMs = Math.round(performance.now() - start)
    console.log(JSON.stringify({ case: "big build", n: BIG_N, size: SIZE, batch: 10_000, buildMs }))
    for (let run = 1; run <= Math.min(RUNS, 3); run++) {
      const child = fork(new URL(import.meta.url), [], {
        execArgv: ["--import", "tsx"],
        env: { ...process.env, BIG_OPEN: dir },
      })
      const [code] = (await once(child, "exit")) as [number | null]
      if (code !== 0) throw new Error(`the BIG_OPEN child exited with ${code}`)
    }
  })
}

/** In a fresh process: open, first page, paging through everything, peak RSS. */
async function bigOpen(dir: string): Promise<void> {
  const rssBefore = process.memoryUsage().rss
  const t0 = performance.now()
  const journal = new LevelJournal(dir)
  await journal.open()
  const openMs = performance.now() - t0
  const first = await journal.pending({ limit: 1_000 })
  const firstPageMs = performance.now() - t0 - openMs
  const stats = await journal.stats()
  const rssAfterFirstPage = process.memoryUsage().rss
  const t1 = performance.now()
  let seen = first.length
  let after = first.at(-1)?.id
  while (after !== undefined) {
    const page = await journal.pending({ after, limit: 1_000 })
    seen += page.length
    after = page.at(-1)?.id
  }
  const pageAllMs = performance.now() - t1
  const peakRssPagingMB = Math.round((process.resourceUsage().maxRSS * 1024) / 1e6)
  await journal.close()
  const db = new Level<string, Buffer>(dir, { keyEncoding: "utf8", valueEncoding: "buffer" })
  await db.open()
  const t2 = performance.now()
  const it = db.keys({ gt: "p:", lt: "p;" })
  let counted = 0
  for (;;) {
    const keys = await it.nextv(10_000)
    if (keys.length === 0) break
    counted += keys.length
  }
  await it.close()
  const countKeysMs = performance.now() - t2
  await db.close()
  console.log(
    JSON.stringify({
      case: "big open",
      n: stats.pending,
      size: SIZE,
      openMs: Math.round(openMs),
      firstPageMs: Math.round(firstPageMs * 10) / 10,
      openAndFirstPageMs: Math.round(openMs + firstPageMs),
      rssBeforeMB: Math.round(rssBefore / 1e6),
      rssAfterFirstPageMB: Math.round(rssAfterFirstPage / 1e6),
      pageAllMs: Math.round(pageAllMs),
      pagedEntries: seen,
      peakRssPagingMB,
      peakRssWithKeyCountMB: Math.round((process.resourceUsage().maxRSS * 1024) / 1e6),
      countKeysMs: Math.round(countKeysMs),
      countedKeys: counted,
    }),
  )
}

await main()
