/**
 * A short chaos run (see test/chaos/harness.ts): a sender with a LevelDB journal and three
 * workers, all in child processes, while workers are SIGKILLed and SIGSTOPped and the sender is
 * SIGKILLed and restarted on its journal. `npm test` replays one fixed fault schedule (seed
 * {@link FIXED_SEED}, or CHAOS_SEED), so that its result does not depend on luck; `npm run chaos`
 * runs longer ones with random seeds, to find new schedules.
 */
import { describe, expect, it } from "vitest"
import { runChaos, summary } from "./chaos/harness.js"

const FIXED_SEED = 12
const seed = Number(process.env["CHAOS_SEED"] ?? FIXED_SEED)
console.log(`chaos: seed ${seed} (replay with CHAOS_SEED=${seed})`)

describe("chaos", () => {
  it(
    `loses no message through worker kills and stops and sender crashes (seed ${seed})`,
    {
      timeout: 60_000,
    },
    async () => {
      const result = await runChaos({
        seed,
        messages: 800,
        seconds: 7,
        recoverySeconds: 15,
        startTimeout: 10_000,
      })
      console.log(summary(result))
      // Every kind of fault happened (the first three faults cover the three kinds).
      for (const [kind, count] of Object.entries(result.faults))
        expect(count, `${kind}: ${summary(result)}`).toBeGreaterThan(0)
      expect(result.failures, summary(result)).toEqual([])
      expect(result.lost).toBe(0)
      expect(result.unique).toBe(result.messages)
      expect(result.final?.journal).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expect(result.duplicatesByCause.unexplained).toBe(0)
      expect(result.rssPeakMb).toBeLessThan(result.maxRssMb)
      expect(result.ok).toBe(true)
    },
  )
})
