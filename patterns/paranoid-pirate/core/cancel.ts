/**
 * `cancel(id)`: removes a message that has not been dispatched yet, wherever it waits: due later
 * in the journal's scheduled store, in the window (ready, delayed, parked behind its key), on
 * disk as backlog ahead of the paging cursor, or set aside for a queue nobody takes.
 */
import { PirateError } from "../../../lib/errors.js"
import { previousId } from "../../../lib/journal/ids.js"
import type { Journal } from "../../../lib/journal/types.js"
import type { Admission } from "./admission.js"
import type { QueueAside } from "./aside.js"
import type { JournalLanes } from "./lanes.js"
import type { Message } from "./message.js"
import type { BacklogPager } from "./pager.js"
import type { Scheduler } from "./scheduler.js"
import type { SendIds } from "./send-ids.js"

/** What a cancel needs of the core. */
export interface CancelHost {
  readonly journal: Journal
  readonly admission: Admission
  readonly lanes: JournalLanes
  readonly scheduler: Scheduler | undefined
  readonly pager: BacklogPager
  readonly aside: QueueAside
  readonly sendIds: SendIds
  /** Ids the pager skips (see `Dispatcher`'s replayed set). */
  readonly replayed: Set<string>
  /** Visits every message in the window that waits: ready, delayed, parked. */
  forEachWaiting(visit: (m: Message) => void): void
  /** Takes a waiting message out of the window (it is done). */
  withdraw(m: Message): void
  /** Messages left the window or the backlog: page in, let producers in, check for drained. */
  settled(): void
  /** Something left the scheduled store: check for drained. */
  checkDrained(): void
}

/** True when message `id` was removed; false when it is unknown, in flight, or done. */
export async function cancelMessage(h: CancelHost, id: string): Promise<boolean> {
  // Every send accepted so far is written: a backlog send is on disk, a scheduled one stored.
  await h.lanes.flush()
  await h.scheduler?.running // a page being moved into the window is dispatched
  if (await h.scheduler?.cancel(id)) {
    h.sendIds.forgetMessage(id)
    h.checkDrained()
    return true
  }
  let m: Message | undefined
  h.forEachWaiting((x) => {
    if (x.id === id) m = x
  })
  if (m) {
    const waiter = m.waiter
    h.withdraw(m)
    forget(h, m.id, m.durable, m.dedupeId)
    waiter?.reject(new PirateError("PIRATE_ABORTED", `message ${id} was cancelled`))
    return true
  }
  await h.pager.running
  if (h.admission.aside > 0 && (await h.aside.cancel(id))) return true
  return cancelBacklog(h, id)
}

/** A cancelled message leaves the journal, and its send id is forgotten. */
export function forget(
  h: Pick<CancelHost, "lanes" | "sendIds">,
  id: string,
  durable: boolean,
  dedupeId: string | undefined,
): void {
  if (durable) h.lanes.remove(id, dedupeId, true)
  if (dedupeId !== undefined) h.sendIds.forgetInMemory(dedupeId)
}

/** Cancels a message of the backlog on disk, ahead of the paging cursor. */
async function cancelBacklog(h: CancelHost, id: string): Promise<boolean> {
  const adm = h.admission
  if (adm.count === 0 || adm.until === undefined || id > adm.until) return false
  if ((adm.after !== undefined && id <= adm.after) || h.replayed.has(id)) return false
  const before = previousId(id)
  const found = await h.journal.pending({
    ...(before === undefined ? {} : { after: before }),
    until: id,
    limit: 1,
  })
  // The pager may have passed it while the journal was read.
  if (found[0]?.id !== id || (adm.after !== undefined && id <= adm.after)) return false
  h.replayed.add(id) // the pager skips it, from the journal or from the kept sends
  h.aside.backlogLeft(found[0])
  adm.count = Math.max(0, adm.count - 1)
  adm.bytes = Math.max(0, adm.bytes - found[0].payload.length)
  forget(h, id, true, found[0].dedupeId)
  h.settled()
  return true
}
