/**
 * `PairJournal`, the Journal a sender pair's active node gives its sender core: writes go to the
 * replication stream while the node is active and wait for the peer as `durability` says; reads
 * go to the node's own journal.
 */
import { TAKES_SPLIT_BODIES } from "../body.js"
import { journalSenderId } from "../journal/sender-id.js"
import type {
  DeadLetter,
  Journal,
  JournalEntry,
  JournalStats,
  JournalUpdate,
} from "../journal/types.js"
import type { DedupeChanges } from "./replicated-journal.js"

/**
 * The Journal a pair's active sender writes to: every write goes to the current stream's
 * `ReplicatedJournal` (or, while this node is not active, straight to its own journal), and
 * `append()`/`schedule()` then wait as `replicated`/`whenAlone` say. Reads go to the node's own
 * journal. `open()`/`close()` do nothing: the caller owns that journal.
 */
export class PairJournal implements Journal {
  readonly persistent: boolean
  readonly #inner: Journal
  readonly #host: { writer: () => Journal; replicated: (w: Journal) => Promise<void> }

  readonly schedule?: NonNullable<Journal["schedule"]>
  readonly due?: NonNullable<Journal["due"]>
  readonly nextDue?: NonNullable<Journal["nextDue"]>
  readonly promote?: NonNullable<Journal["promote"]>
  readonly unschedule?: NonNullable<Journal["unschedule"]>
  readonly dedupeLookup?: NonNullable<Journal["dedupeLookup"]>
  readonly dedupeForget?: NonNullable<Journal["dedupeForget"]>

  constructor(
    inner: Journal,
    host: { writer: () => Journal; replicated: (w: Journal) => Promise<void> },
  ) {
    this.#inner = inner
    this.#host = host
    this.persistent = inner.persistent
    if (TAKES_SPLIT_BODIES in inner)
      Object.defineProperty(this, TAKES_SPLIT_BODIES, { value: true })
    const w = (): Journal => host.writer()
    if (inner.schedule) {
      this.schedule = async (entries, o) => {
        const writer = w()
        await (writer.schedule as NonNullable<Journal["schedule"]>).call(writer, entries, o)
        if (entries.length > 0) await host.replicated(writer)
      }
    }
    if (inner.due) this.due = (o) => (inner.due as NonNullable<Journal["due"]>).call(inner, o)
    if (inner.nextDue)
      this.nextDue = () => (inner.nextDue as NonNullable<Journal["nextDue"]>).call(inner)
    if (inner.promote) {
      this.promote = (entries, o) => {
        const writer = w()
        return (writer.promote as NonNullable<Journal["promote"]>).call(writer, entries, o)
      }
    }
    if (inner.unschedule) {
      this.unschedule = (ids) => {
        const writer = w()
        return (writer.unschedule as NonNullable<Journal["unschedule"]>).call(writer, ids)
      }
    }
    if (inner.dedupeLookup)
      this.dedupeLookup = (ids) =>
        (inner.dedupeLookup as NonNullable<Journal["dedupeLookup"]>).call(inner, ids)
    if (inner.dedupeForget) {
      this.dedupeForget = (before) => {
        const writer = w()
        return (writer.dedupeForget as NonNullable<Journal["dedupeForget"]>).call(writer, before)
      }
    }
  }

  async open(): Promise<void> {}
  async close(): Promise<void> {}

  /** The pair's sender id as this node's journal keeps it (adopted from the active). */
  senderId(): Promise<string> {
    return journalSenderId(this.#inner)
  }

  async append(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void> {
    const writer = this.#host.writer()
    await writer.append(entries, options)
    if (entries.length > 0) await this.#host.replicated(writer)
  }

  remove(ids: readonly string[], dedupe?: DedupeChanges): Promise<void> {
    const writer = this.#host.writer()
    return dedupe === undefined ? writer.remove(ids) : writer.remove(ids, dedupe)
  }

  update(updates: readonly JournalUpdate[]): Promise<void> {
    return this.#host.writer().update(updates)
  }

  bury(letters: readonly DeadLetter[]): Promise<void> {
    return this.#host.writer().bury(letters)
  }

  replay(ids: readonly string[]): Promise<JournalEntry[]> {
    return this.#host.writer().replay(ids)
  }

  purgeDead(ids: readonly string[]): Promise<number> {
    return this.#host.writer().purgeDead(ids)
  }

  pending(options: { after?: string; until?: string; limit: number }): Promise<JournalEntry[]> {
    return this.#inner.pending(options)
  }

  dead(options?: { after?: string; limit?: number }): Promise<DeadLetter[]> {
    return this.#inner.dead(options)
  }

  lastId(): Promise<string | undefined> {
    return this.#inner.lastId()
  }

  stats(): Promise<JournalStats> {
    return this.#inner.stats()
  }
}
