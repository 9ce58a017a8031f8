/**
 * The pages in which a pair's active sends a full copy (COPY) and a returning node its hand-over
 * (HANDOVER): at most 256 entries and 1 MiB each, by an estimate of an entry's size on the wire.
 * Pure, no I/O.
 */
import type { JournalEntry } from "../journal/types.js"

/** Entries per COPY or HANDOVER page, and its bytes (at least one entry). */
export const PAGE_ENTRIES = 256
const PAGE_BYTES = 1024 * 1024

/** An estimate of an entry's size on the wire. */
function entryBytes(e: JournalEntry): number {
  return (
    96 +
    e.payload.length +
    (e.key?.length ?? 0) +
    (e.lastError?.length ?? 0) +
    (e.dedupeId?.length ?? 0)
  )
}

/** An estimate of the entries' size on the wire. */
export function entriesBytes(entries: readonly JournalEntry[]): number {
  let n = 0
  for (const e of entries) n += entryBytes(e)
  return n
}

/**
 * The pages of PAGE_ENTRIES entries that `read` (a journal's `pending()` or `dead()`) gives after
 * `after`, in id order, until it gives none.
 */
export async function* journalPages<T extends JournalEntry>(
  read: (range: { after?: string; limit: number }) => Promise<T[]>,
  after?: string,
): AsyncGenerator<T[]> {
  for (let from = after; ;) {
    const page = await read(
      from === undefined ? { limit: PAGE_ENTRIES } : { after: from, limit: PAGE_ENTRIES },
    )
    if (page.length === 0) return
    yield page
    from = (page.at(-1) as T).id
  }
}

/** Pages of at most PAGE_ENTRIES entries and PAGE_BYTES bytes (at least one entry each). */
export function chunks<T extends JournalEntry>(entries: readonly T[]): T[][] {
  const out: T[][] = []
  let page: T[] = []
  let bytes = 0
  for (const e of entries) {
    const b = entryBytes(e)
    if (page.length > 0 && (page.length >= PAGE_ENTRIES || bytes + b > PAGE_BYTES)) {
      out.push(page)
      page = []
      bytes = 0
    }
    page.push(e)
    bytes += b
  }
  if (page.length > 0) out.push(page)
  return out
}
