/**
 * The restart path with large payloads: a `LevelJournal` holding TOTAL_MB MiB of pending
 * messages of SIZE bytes (1 GiB of 1 MiB payloads by default), written once at "os" (its write
 * throughput is reported too), then per run: `open()` (the checks of the logs, tables, keys and
 * value-log segments) and the first page a restarted sender reads (PAGE messages). The sequential
 * read of the same bytes from one file in the same run is the ceiling of that page.
 *
 *   npx tsx bench/journal-open.ts
 *   env: TOTAL_MB (1024), SIZE (1048576), RUNS (5), PAGE (64)
 *
 * Prints one JSON line per run, then one with the medians (`stat: "median"`).
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { mkdtemp } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { loadLibrary } from "./lib/compiled.js"
import { envInt, printLine } from "./lib/env.js"
import { median, round } from "./lib/stats.js"

const { LevelJournal } = await loadLibrary()

const TOTAL_MB = envInt("TOTAL_MB", 1024)
const SIZE = envInt("SIZE", 1024 * 1024)
const RUNS = envInt("RUNS", 5)
const PAGE = envInt("PAGE", 64)
const N = Math.max(1, Math.floor((TOTAL_MB * 1024 * 1024) / SIZE))

const dir = await mkdtemp(join(tmpdir(), "bench-journal-open-"))
process.on("exit", () => rmSync(dir, { recursive: true, force: true }))

// Ids as an IdGenerator makes them: 16 hex digits, increasing.
const base = BigInt(Date.now()) * 1000n
const id = (i: number): string => (base + BigInt(i)).toString(16).padStart(16, "0")
const payload = Buffer.alloc(SIZE, 0x5a)

const journalDir = join(dir, "journal")
const journal = new LevelJournal(journalDir)
await journal.open()
let t0 = performance.now()
for (let i = 0; i < N; i++)
  await journal.append([{ id: id(i), payload, attempts: 0, enqueuedAt: Date.now() }], {
    sync: false,
  })
const writeMs = performance.now() - t0
await journal.close()
printLine({
  bench: "journal-open",
  phase: "write",
  n: N,
  size: SIZE,
  ms: round(writeMs, 1),
  mbPerSec: round((N * SIZE) / 1024 / 1024 / (writeMs / 1000), 1),
})

const file = join(dir, "plain")
writeFileSync(file, Buffer.alloc(PAGE * SIZE, 0x5a))
const runs: { openMs: number; firstPageMs: number; fileReadMs: number }[] = []
for (let run = 1; run <= RUNS; run++) {
  const j = new LevelJournal(journalDir)
  t0 = performance.now()
  await j.open()
  const openMs = performance.now() - t0
  const page = await j.pending({ limit: PAGE })
  const firstPageMs = performance.now() - t0 - openMs
  await j.close()
  if (page.length !== Math.min(PAGE, N)) throw new Error(`first page: ${page.length} entries`)
  t0 = performance.now()
  readFileSync(file)
  const fileReadMs = performance.now() - t0
  const r = {
    openMs: round(openMs, 1),
    firstPageMs: round(firstPageMs, 1),
    fileReadMs: round(fileReadMs, 1),
  }
  runs.push(r)
  printLine({
    bench: "journal-open",
    case: "restart",
    run,
    pending: N,
    size: SIZE,
    page: PAGE,
    ...r,
  })
}
const openMs = median(runs.map((r) => r.openMs))
const firstPageMs = median(runs.map((r) => r.firstPageMs))
const fileReadMs = median(runs.map((r) => r.fileReadMs))
printLine({
  bench: "journal-open",
  case: "restart",
  stat: "median",
  runs: RUNS,
  pending: N,
  pendingMb: round((N * SIZE) / 1024 / 1024, 1),
  size: SIZE,
  page: PAGE,
  openMs,
  firstPageMs,
  fileReadMs,
  firstPageVsFileRead: round(fileReadMs / firstPageMs, 3),
})
