/**
 * The sender's `Scheduler` against a scripted scheduled store: what it loads into the window and
 * what it counts when the journal and a `cancel()` race.
 */
import { describe, expect, it } from "vitest"
import type { JournalEntry } from "../../lib/journal/types.js"
import { Scheduler, type ScheduledStore } from "../../patterns/paranoid-pirate/core/scheduler.js"

function entry(id: string, notBefore: number): JournalEntry {
  return { id, payload: Buffer.from(id), attempts: 0, enqueuedAt: 0, notBefore }
}

describe("Scheduler", () => {
  it("loads only what promote() moved: one unscheduled by a cancel() after due() read it is not delivered", async () => {
    const a = entry("0000000000000001", Date.now())
    const b = entry("0000000000000002", Date.now())
    const store: ScheduledStore = {
      schedule: async () => {},
      // The read saw both; the cancel of `a` was written before the promotion.
      due: async () => [a, b],
      nextDue: async () => undefined,
      promote: async () => [b.id],
      unschedule: async (ids) => [...ids],
    }
    const loaded: string[] = []
    let paged: () => void = () => {}
    const pagedOnce = new Promise<void>((r) => (paged = r))
    const scheduler = new Scheduler(store, {
      room: () => 100,
      roomBytes: () => Infinity,
      load: (e) => void loaded.push(e.id),
      sync: false,
      closed: () => false,
      paged: () => paged(),
      error: (err) => {
        throw err
      },
    })
    await scheduler.start(0)
    for (const e of [a, b]) {
      scheduler.writing()
      scheduler.written(e, true)
    }
    expect(scheduler.count).toBe(2)
    expect(await scheduler.cancel(a.id)).toBe(true)
    await pagedOnce
    expect(loaded).toEqual([b.id])
    expect(scheduler.count).toBe(0)
    expect(scheduler.busy).toBe(false)
    scheduler.stop()
  })
})
