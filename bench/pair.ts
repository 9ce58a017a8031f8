/**
 * What does a sender pair cost, and how fast does it recover (issue 15)? Three questions, both
 * senders on this machine (docs/bench-pair.md explains every field and gives one run's figures):
 *
 *   raw-zeromq   the raw zeromq.js baseline of the same run: a DEALER here → a ROUTER in a child
 *                (bench/fixtures/raw-sink.ts), one-way, each send awaited
 *   os           one plain `Sender` in this process, a `LevelJournal` at durability "os"
 *   replicated   the primary of a pair in this process (a `LevelJournal`), the backup in a child
 *                process (its own `LevelJournal`), durability "replicated": a send resolves once
 *                the backup acked its append
 *     Both: the default codec (msgpack), SIZE-byte payloads, sends awaited PUBLISH_BATCH at a time
 *     (the peers' harness's shape), 2 worker processes (connected to both senders of the pair),
 *     first send → `drained()`; msgs/s, the ratio to `os` (target ≥ 0.7), and the sender CPU µs
 *     per message (`process.cpuUsage()` of this process; the backup's own in `backupCpuUsPerMsg`).
 *   failover, failover-short
 *                both senders as child processes, 2 worker processes, a light load streaming on
 *                the active (STREAM_BATCH sends awaited together, then STREAM_PAUSE_MS); KILLS
 *                times: SIGKILL the active, time until the passive emits `pair:active`, restart
 *                the killed node (same ports and journal), wait until it is passive, the active's
 *                `stats().pair.replicated` is true and it has its workers back. p50 and max over
 *                the kills; target p50 ≤ pair.timeout + 200 ms. `failover`: the default heartbeat
 *                (1000 ms, pair.timeout 3000 ms); `failover-short`: 100 ms, pair.timeout 300 ms.
 *   catchup      the primary in this process with CATCHUP pending messages (SIZE bytes, no worker,
 *                filled with the backup killed and `whenAlone: "local"`), then the backup starts in
 *                a child process with an empty journal (its directory deleted: a lost disk); time
 *                from its start until the primary's `stats().pair.replicated` is true (a full
 *                copy), msgs/s, and the backup's peak RSS (target < 200 MB).
 *
 *   npx tsx bench/pair.ts
 *   env: N (50000 messages per throughput run), SIZE (256 bytes), RUNS (5), WARMUP (5000),
 *        PUBLISH_BATCH (1000), CONCURRENCY (64: each worker's concurrency and prefetch),
 *        KILLS (10 per failover case), STREAM_BATCH (10), STREAM_PAUSE_MS (10),
 *        CATCHUP (1000000 pending), CATCHUP_RUNS (1), CASES (comma-separated subset of
 *        raw-zeromq, os, replicated, failover, failover-short, catchup),
 *        BENCH_QUICK=1 (N 10000, RUNS 2, WARMUP 2000, KILLS 3, CATCHUP 100000: about a minute),
 *        CPU_PROF_DIR (the child processes write `--cpu-prof` profiles there; run this process
 *        with `node --cpu-prof --import tsx bench/pair.ts` for the primary's)
 *
 * Prints JSON lines: one per case per run (per kill for the failover cases), then one per case
 * with the medians (`stat: "median"`), ratios and targets. The throughput cases of one run are
 * interleaved (their order rotates from run to run), so that the noise of a shared machine falls
 * on every case alike.
 *
 * The cases live in bench/pair-cases/ (throughput.ts, failover.ts, catchup.ts; the child processes
 * and a pair's addresses in nodes.ts, the settings in settings.ts).
 */
import { runBench } from "./lib/children.js"
import { printLine } from "./lib/env.js"
import { catchups } from "./pair-cases/catchup.js"
import { failover } from "./pair-cases/failover.js"
import {
  BENCH,
  CASES,
  CATCHUP,
  CATCHUP_RUNS,
  CONCURRENCY,
  FAILOVERS,
  KILLS,
  N,
  PUBLISH_BATCH,
  RUNS,
  SIZE,
  STREAM_BATCH,
  STREAM_PAUSE_MS,
  WARMUP,
  WORKERS,
  wanted,
} from "./pair-cases/settings.js"
import { throughput } from "./pair-cases/throughput.js"

await runBench(async () => {
  printLine({
    bench: BENCH,
    config: {
      n: N,
      size: SIZE,
      runs: RUNS,
      warmup: WARMUP,
      publishBatch: PUBLISH_BATCH,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      kills: KILLS,
      stream: { batch: STREAM_BATCH, pauseMs: STREAM_PAUSE_MS },
      catchup: CATCHUP,
      catchupRuns: CATCHUP_RUNS,
    },
    cases: CASES ?? "all",
    node: process.version,
  })
  await throughput()
  for (const spec of FAILOVERS) if (wanted(spec.name)) await failover(spec)
  await catchups()
}, 1_800_000)
