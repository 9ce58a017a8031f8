/**
 * Everything a journal holds, in a form that journals of two kinds (and two processes, through
 * IPC) can compare: pending, dead and scheduled entries with hex payloads and no undefined
 * fields, stats, lastId and the dedupe records of the given send ids.
 */
import type { Journal, JournalEntry } from "../../lib/journal/types.js"

export async function journalContents(
  journal: Journal,
  dedupeIds: readonly string[] = [],
): Promise<Record<string, unknown>> {
  const plain = (e: JournalEntry): Record<string, unknown> =>
    Object.fromEntries(
      Object.entries({ ...e, payload: e.payload.toString("hex") }).filter(
        ([, v]) => v !== undefined,
      ),
    )
  const scheduled = (await journal.due?.({ until: Number.MAX_SAFE_INTEGER, limit: 1e6 })) ?? []
  const dedupe = await journal.dedupeLookup?.(dedupeIds)
  return {
    pending: (await journal.pending({ limit: 1e6 })).map(plain),
    dead: (await journal.dead()).map(plain),
    scheduled: scheduled.map(plain),
    nextDue: (await journal.nextDue?.()) ?? null,
    stats: await journal.stats(),
    lastId: (await journal.lastId()) ?? null,
    // null rather than undefined: the form survives JSON (IPC).
    dedupe: dedupe?.map((r) => (r === undefined ? null : r)) ?? null,
  }
}
