/**
 * The settings of bench/pair.ts (see its header for the environment variables), the payloads it
 * sends, its targets, and the shape of a case's result.
 */
import { randomBytes } from "node:crypto"
import { envInt } from "../lib/env.js"

export const QUICK = process.env["BENCH_QUICK"] === "1"
export const N = envInt("N", QUICK ? 10_000 : 50_000)
export const SIZE = envInt("SIZE", 256)
export const RUNS = envInt("RUNS", QUICK ? 2 : 5)
export const WARMUP = envInt("WARMUP", QUICK ? 2000 : 5000)
export const PUBLISH_BATCH = envInt("PUBLISH_BATCH", 1000)
export const CONCURRENCY = envInt("CONCURRENCY", 64)
export const KILLS = envInt("KILLS", QUICK ? 3 : 10)
export const STREAM_BATCH = envInt("STREAM_BATCH", 10)
export const STREAM_PAUSE_MS = envInt("STREAM_PAUSE_MS", 10)
export const CATCHUP = envInt("CATCHUP", QUICK ? 100_000 : 1_000_000)
export const CATCHUP_RUNS = envInt("CATCHUP_RUNS", 1)
export const CASES = process.env["CASES"]?.split(",").map((c) => c.trim())
export const CPU_PROF_DIR = process.env["CPU_PROF_DIR"]
if (CPU_PROF_DIR !== undefined)
  process.env["BENCH_CHILD_NODE_ARGS"] = `--cpu-prof --cpu-prof-dir=${CPU_PROF_DIR}`

export const WORKERS = 2
/** Distinct random payloads cycled through (random: nothing for LevelDB's compression to squeeze). */
export const POOL = 1024
export const BODIES = Array.from({ length: POOL }, () => randomBytes(SIZE))
export const BENCH = "pair"
export const RATIO_TARGET = 0.7
export const CATCHUP_RSS_TARGET_MB = 200
/** Failover: the passive takes over within pair.timeout + this (ms). */
export const FAILOVER_SLACK = 200
export const FAILOVERS = [
  { name: "failover", heartbeatInterval: 1000, timeout: 3000 },
  { name: "failover-short", heartbeatInterval: 100, timeout: 300 },
] as const

export const wanted = (name: string): boolean => CASES === undefined || CASES.includes(name)

export interface Result {
  case: string
  [key: string]: unknown
}
