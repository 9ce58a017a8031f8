/** A script of journal changes that touches every kind of change a journal takes. */
import type { Journal } from "../../lib/journal/types.js"
import { entry, id, letter } from "../suites/journal.js"

/** Every kind of change, in an order where each one has something to act on. */
export async function everyChange(j: Journal): Promise<void> {
  await j.append(
    [
      entry(1, { dedupeId: "send-1" }),
      entry(2, { priority: 7, key: "k", queue: "resize", headers: { a: "b" } }),
      entry(3, { expiresAt: 1_900_000_000_000 }),
      entry(4, { dedupeId: "send-4" }),
      entry(5),
      entry(6),
    ],
    { sync: false },
  )
  await j.update([{ id: id(2), attempts: 1, lastError: "first", notBefore: 1_700_000_001_000 }])
  await j.remove([id(1)], { acked: ["send-1"], forget: [], at: 1_700_000_002_000 })
  await j.bury([
    letter(entry(3), "gave up"),
    letter(entry(4, { dedupeId: "send-4" }), "bad"),
    letter(entry(6), "kept"),
  ])
  await j.replay([id(3), id(99)])
  await j.purgeDead([id(4)])
  await j.schedule?.(
    [
      entry(10, { notBefore: 1_700_000_500_000, dedupeId: "later-10" }),
      entry(11, { notBefore: 1_700_000_400_000 }),
      entry(12, { notBefore: 1_700_000_600_000 }),
    ],
    { sync: false },
  )
  const due = (await j.due?.({ until: 1_700_000_450_000, limit: 10 })) ?? []
  await j.promote?.(due, { sync: false })
  await j.unschedule?.([id(12), id(98)])
  await j.dedupeForget?.(1_700_000_003_000)
  await j.remove([id(5)])
}

/** The send ids `everyChange` uses. */
export const DEDUPE_IDS = ["send-1", "send-4", "later-10"]
