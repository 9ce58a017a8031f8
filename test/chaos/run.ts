/**
 * `npm run chaos`: one chaos run (see harness.ts) with settings from the environment:
 * CHAOS_SEED (default: random), CHAOS_MESSAGES (5000), CHAOS_SECONDS (20), CHAOS_WORKERS (3),
 * CHAOS_FAULT_GAP (mean ms between faults, 700), CHAOS_JOB_MS (work per message, random up to
 * this, 4), CHAOS_MAX_RSS_MB (300), CHAOS_QUIET=1 (no fault-by-fault lines).
 * Prints the fault log, one summary line and one JSON line; exits 1 if an invariant failed.
 */
import { runChaos, summary } from "./harness.js"

function env(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) {
    process.stderr.write(`${name} must be a non-negative number, got ${raw}\n`)
    process.exit(2)
  }
  return value
}

const seed = env("CHAOS_SEED", Math.floor(Math.random() * 2 ** 31))
const messages = env("CHAOS_MESSAGES", 5000)
const seconds = env("CHAOS_SECONDS", 20)
console.log(
  `chaos: seed ${seed} (reproduce with CHAOS_SEED=${seed}), ${messages} messages over ${seconds} s`,
)
const result = await runChaos({
  seed,
  messages,
  seconds,
  workers: Math.max(1, env("CHAOS_WORKERS", 3)),
  meanFaultGap: Math.max(50, env("CHAOS_FAULT_GAP", 700)),
  jobMs: env("CHAOS_JOB_MS", 4),
  maxRssMb: env("CHAOS_MAX_RSS_MB", 300),
  ...(process.env["CHAOS_QUIET"] === "1" ? {} : { log: (line: string) => console.log(line) }),
})
console.log(summary(result))
console.log(JSON.stringify(result))
process.exitCode = result.ok ? 0 : 1
