/**
 * What a passive's full copy removes (docs/pair.md, section 3.4): what the node holds in the id
 * range a page covers and the page does not, and the scheduled entries no page brought.
 */
import type { Journal, JournalEntry } from "../journal/types.js"

/**
 * A copy page of `kind` covers the ids after `after` up to `until` (to the end when undefined):
 * removes what the journal holds of that kind in the range and the page does not.
 */
export async function sweep(
  j: Journal,
  kind: "pending" | "dead",
  after: string | undefined,
  until: string | undefined,
  page: readonly JournalEntry[],
): Promise<void> {
  const keep = new Set(page.map((e) => e.id))
  let cursor = after
  for (;;) {
    const from = cursor === undefined ? {} : { after: cursor }
    const held =
      kind === "pending"
        ? await j.pending({ ...from, ...(until === undefined ? {} : { until }), limit: 1024 })
        : (await j.dead({ ...from, limit: 1024 })).filter(
            (d) => until === undefined || d.id <= until,
          )
    if (held.length === 0) return
    const gone = held.filter((e) => !keep.has(e.id)).map((e) => e.id)
    if (gone.length > 0) await (kind === "pending" ? j.remove(gone) : j.purgeDead(gone))
    cursor = (held.at(-1) as JournalEntry).id
    if (until !== undefined && cursor >= until) return
  }
}

/** Unschedules every scheduled entry not in `keep` (after a full copy). */
export async function unscheduleExcept(j: Journal, keep: ReadonlySet<string>): Promise<void> {
  if (j.due === undefined || j.unschedule === undefined) return
  // due() has no cursor: read all, as the copy does (docs/pair.md).
  const all = await j.due({ until: Number.MAX_SAFE_INTEGER, limit: Number.MAX_SAFE_INTEGER })
  const gone = all.filter((e) => !keep.has(e.id)).map((e) => e.id)
  if (gone.length > 0) await j.unschedule(gone)
}
