/**
 * The batches of a `LevelJournal` (format 3, see level-batch.ts) as its writes and reads use
 * them: the index in memory, the operations a write adds for them, and the reads of their values.
 * `LevelJournal` runs every write one at a time and changes the index only once a write is
 * committed (`added`, `applied`).
 */
import { corruptValue } from "./level-errors.js"
import { addKey, maxId, removeKey, type Counters } from "./level-format.js"
import {
  BATCH,
  BatchIndex,
  SlotChanges,
  acksKeyOf,
  decodeAcks,
  decodeBatch,
  encodeAcks,
  encodeBatchParts,
  isAcked,
  parseBatchKey,
  popcount,
  slotOf,
  slotsOf,
  type Batch,
} from "./level-batch.js"
import { getMany, type Db } from "./level-db.js"
import {
  SegmentChanges,
  decodePointer,
  encodePointer,
  isPointer,
  type Pointer,
  type ValueLog,
} from "./level-values.js"
import type { JournalEntry } from "./types.js"

export type Op = { type: "put"; key: string; value: Buffer } | { type: "del"; key: string }

/**
 * A batch holds at most this many entries and bytes of payload (or one entry): a page read from
 * the journal decodes whole batches, and a batch's bitmap is written again with each ack of it.
 * The bytes stay under 128 KiB: LevelDB copies a value several times on its way to disk, and a
 * copy that large gets memory of its own from the system (mmap) each time, which costs a page
 * fault per 4 KiB (3–5 ns per byte measured here, against under 1 below that size).
 */
const MAX_BATCH = 1024
const MAX_BATCH_BYTES = 96 * 1024

/**
 * A payload this large is written to the value log from its own Buffer, not copied into its
 * batch's value first: a copy that large costs a fresh allocation from the system (mmap) and a
 * page fault per 4 KiB of it.
 */
const COPY_BELOW = 16 * 1024

/**
 * Batches are encoded into buffers kept for the next appends once written: a fresh buffer of
 * this size costs a page fault per 4 KiB at its first write (here 0.5–0.8 µs per message of 256
 * bytes, more than the rest of its encoding). Room for the largest batch value (MAX_BATCH_BYTES
 * of payloads with their entries' heads); a few, so that an append of several batches reuses them.
 */
const SPARE_BYTES = MAX_BATCH_BYTES + MAX_BATCH * 64
const SPARES = 8

/**
 * The default `minBatch`: appends of fewer new entries go to `p:` keys one by one, as a batch
 * costs memory in the index while it is pending, which would add up for a sender that sends one
 * message at a time.
 */
export const MIN_BATCH = 8

export class BatchStore {
  readonly #path: string
  /** Where the values of batches are (format 4): LevelDB holds pointers to them. */
  readonly #values: ValueLog
  /** The batches on disk (`b:` keys) and which of their entries are still pending. */
  #index = new BatchIndex()
  /** The batch read last: pages are read in id order, and a page seldom ends where a batch does. */
  #lastRead: { key: string; entries: JournalEntry[] } | undefined
  /** Encode buffers of batches, free again once their append is written (see SPARE_BYTES). */
  readonly #spares: Buffer[] = []
  /** Encode buffers made so far, free or in a write: SPARES at most. */
  #sparesMade = 0

  /**
   * @param path - the journal's directory, for errors
   * @param values - its value log
   */
  constructor(path: string, values: ValueLog) {
    this.#path = path
    this.#values = values
  }

  /**
   * Appends new entries (ids above every stored one) to the value log, as batches of at most
   * MAX_BATCH entries and MAX_BATCH_BYTES, and adds the puts of their pointers to `ops` and
   * `next`; returns the batches for `added()`.
   */
  async appendOps(
    fresh: JournalEntry[],
    ops: Op[],
    next: Counters,
    sync: boolean,
    segments: SegmentChanges,
  ): Promise<Batch[]> {
    if (!isSorted(fresh)) fresh.sort((a, b) => (a.id < b.id ? -1 : 1))
    const batches: Batch[] = []
    const values: { parts: Buffer[]; length: number }[] = []
    const used: Buffer[] = []
    for (const part of chunks(fresh)) {
      const spare = this.#spare()
      const { key, parts, length, name, into } = encodeBatchParts(part, COPY_BELOW, spare)
      // A value larger than a spare has a buffer of its own; the spare stays free.
      if (spare !== undefined) (into ? used : this.#spares).push(spare)
      values.push({ parts, length })
      next.pending += part.length
      next.keySum = addKey(next.keySum, key)
      next.lastId = maxId(next.lastId, name.last)
      const slots = slotsOf(part.map((e) => e.id))
      batches.push({ key, ...name, slots, acked: undefined, live: part.length })
    }
    // Nothing refers to the encoded values once written (reads decode buffers of their own).
    const pointers = await this.#values
      .append(values, sync, segments)
      .finally(() => this.#spares.push(...used))
    batches.forEach((b, i) => {
      const p = pointers[i] as Pointer
      b.segment = p.segment
      ops.push({ type: "put", key: b.key, value: encodePointer(p) })
    })
    return batches
  }

  /** A free encode buffer, a new one while there are fewer than SPARES, else none. */
  #spare(): Buffer | undefined {
    const free = this.#spares.pop()
    if (free !== undefined || this.#sparesMade >= SPARES) return free
    this.#sparesMade++
    return Buffer.allocUnsafeSlow(SPARE_BYTES)
  }

  /** Batches of a committed append join the index. */
  added(batches: readonly Batch[]): void {
    for (const b of batches) this.#index.add(b)
  }

  /** Adds the writes of a change to batch entries to `ops`, `next` and `segments`. */
  changeOps(changes: SlotChanges, ops: Op[], next: Counters, segments: SegmentChanges): void {
    for (const { batch, acked, live, cleared } of changes.entries()) {
      next.pending -= cleared
      const acksKey = acksKeyOf(batch.key)
      if (live <= 0) {
        ops.push({ type: "del", key: batch.key })
        if (batch.segment !== undefined) segments.drop(batch.segment)
        next.keySum = removeKey(next.keySum, batch.key)
        if (batch.acked !== undefined) {
          ops.push({ type: "del", key: acksKey })
          next.keySum = removeKey(next.keySum, acksKey)
        }
      } else {
        if (batch.acked === undefined) next.keySum = addKey(next.keySum, acksKey)
        ops.push({ type: "put", key: acksKey, value: encodeAcks(batch.key, acked) })
      }
    }
  }

  /** Makes a committed change the index's. */
  applied(changes: SlotChanges): void {
    changes.apply(this.#index)
  }

  /**
   * Sorts ids into the pending entries of batches (`slots`: batch, slot, id) and the rest
   * (`loose`: under a `p:` key, or not pending at all), loading the slots of the batches first.
   */
  async locate(
    db: Db,
    ids: readonly string[],
  ): Promise<{ slots: [Batch, number, string][]; loose: string[] }> {
    const slots: [Batch, number, string][] = []
    const loose = await this.visit(db, ids, (b, slot, id) => slots.push([b, slot, id]))
    return { slots, loose }
  }

  /**
   * {@link locate} without a tuple per id (the acks' path): calls `found` for each id pending in a
   * batch, in the order of `ids`, and returns the rest.
   */
  async visit(
    db: Db,
    ids: readonly string[],
    found: (batch: Batch, slot: number, id: string) => void,
  ): Promise<string[]> {
    const loose: string[] = []
    const batches = new Array<Batch | undefined>(ids.length)
    let unloaded: Set<Batch> | undefined
    let last: Batch | undefined // acks come in id order, mostly from one batch after another
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as string
      const b =
        last !== undefined && last.first <= id && id <= last.last ? last : this.#index.find(id)
      last = b
      batches[i] = b
      if (b !== undefined && b.slots === undefined) (unloaded ??= new Set()).add(b)
    }
    if (unloaded !== undefined) await this.entries(db, [...unloaded])
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as string
      const b = batches[i]
      const slot = b === undefined ? -1 : slotOf(b, id)
      // Not in a batch, not in this one, or moved out of it to a `p:` key.
      if (b === undefined || slot < 0 || isAcked(b.acked, slot)) loose.push(id)
      else found(b, slot, id)
    }
    return loose
  }

  /** The entries of batches in the index, in slot order (a missing one is damage). */
  async entries(db: Db, batches: readonly Batch[]): Promise<Map<Batch, JournalEntry[]>> {
    const read = await this.#read(db, batches)
    const out = new Map<Batch, JournalEntry[]>()
    batches.forEach((b, i) => {
      const entries = read[i]
      if (entries === undefined) throw corruptValue(this.#path, b.key, "the batch is missing")
      out.set(b, entries)
    })
    return out
  }

  /**
   * The pending entries of the batches with ids in (`after`, `until`], in id order, at most
   * `limit`, with payloads of their own. A batch deleted meanwhile (every entry of it acked)
   * reads as missing and gives none.
   */
  async pending(
    db: Db,
    after: string | undefined,
    until: string | undefined,
    limit: number,
  ): Promise<JournalEntry[]> {
    const out: JournalEntry[] = []
    let from = after
    while (out.length < limit) {
      const batches = this.#index.collect(from, until, limit - out.length)
      if (batches.length === 0) break
      const read = await this.#read(db, batches)
      batches.forEach((b, i) => {
        const entries = read[i]
        if (entries === undefined) return
        const wanted = (e: JournalEntry, slot: number): boolean =>
          (after === undefined || e.id > after) &&
          (until === undefined || e.id <= until) &&
          !isAcked(b.acked, slot)
        // Views of the batch's value while this page takes most of it (a drain: whole batches);
        // copies of a few pending entries of a batch otherwise, which would keep all of it in
        // memory. (A message that then waits in memory, a retry or a delay, is copied by the
        // sender: see ownPayload().)
        let bytes = 0
        entries.forEach((e, slot) => {
          if (wanted(e, slot)) bytes += e.payload.length
        })
        const share = 2 * bytes >= (entries[0]?.payload.buffer.byteLength ?? 0)
        // Entries decoded by this read are the caller's; the batch kept for the next read (see
        // #read) gives copies, so that a caller's changes never reach that batch.
        const kept = entries === this.#lastRead?.entries
        entries.forEach((e, slot) => {
          if (!wanted(e, slot)) return
          if (kept || !share)
            out.push({ ...e, payload: share ? e.payload : Buffer.from(e.payload) })
          else out.push(e)
        })
      })
      from = (batches[batches.length - 1] as Batch).last
    }
    return out
  }

  /**
   * Replaces the index with the batches under `batches` (`b:` keys) and the bitmaps under `acks`
   * (`a:` keys), keeping the slots already loaded of those that were in it; returns how many of
   * their entries are pending.
   */
  async load(db: Db, batches: readonly string[], acks: readonly string[]): Promise<number> {
    const previous = this.#index
    const index = new BatchIndex()
    const byKey = new Map<string, Batch>()
    for (const key of batches) {
      const name = parseBatchKey(key) as { first: string; last: string; count: number }
      const known = previous.find(name.first)
      const b: Batch = {
        key,
        ...name,
        slots: known?.key === key ? known.slots : undefined,
        segment: known?.key === key ? known.segment : undefined,
        acked: undefined,
        live: name.count,
      }
      index.add(b)
      byKey.set(key, b)
    }
    const values = acks.length > 0 ? await getMany(db, [...acks]) : []
    acks.forEach((key, i) => {
      const b = byKey.get(BATCH + key.slice(2))
      const value = values[i]
      if (b === undefined)
        throw corruptValue(this.#path, key, "the bitmap of a batch that is not there")
      const acked = value === undefined ? "it is missing" : decodeAcks(key, value)
      if (typeof acked === "string") throw corruptValue(this.#path, key, acked)
      b.acked = acked
      b.live = b.count - popcount(acked)
      if (b.live <= 0) throw corruptValue(this.#path, key, "a batch with no pending entry")
    })
    let pending = 0
    for (const b of index.all) pending += b.live
    this.#index = index
    return pending
  }

  /** Loads the index again from the `b:` and `a:` keys on disk (after a failed write). */
  async reload(db: Db): Promise<void> {
    const keys = await db.keys({ gte: "a:", lt: "b;" }).all()
    await this.load(
      db,
      keys.filter((k) => k.startsWith(BATCH)),
      keys.filter((k) => !k.startsWith(BATCH)),
    )
  }

  /** Forgets the batch read last (at close). */
  forget(): void {
    this.#lastRead = undefined
  }

  /** The value a batch's key holds, read from the value log when it is a pointer there. */
  async #resolve(
    db: Db,
    key: string,
    stored: Buffer | undefined,
    again = true,
  ): Promise<{ value: Buffer; segment: number | undefined } | undefined> {
    if (stored === undefined || !isPointer(stored))
      return stored && { value: stored, segment: undefined }
    const p = decodePointer(stored)
    if (typeof p === "string") throw corruptValue(this.#path, key, `its pointer: ${p}`)
    const value = await this.#values.read(p)
    if (value !== undefined) return { value, segment: p.segment }
    // Its segment was deleted meanwhile: the batch is gone, or was moved by a compaction.
    if (!again) return undefined
    const [now] = await getMany(db, [key])
    return this.#resolve(db, key, now, false)
  }

  /**
   * The puts that move the batches of a segment to the active one (a compaction, see
   * COMPACT_LIVE), adding them to `ops` and `segments`; the batches moved, or none when the
   * index does not know every batch of the segment (it learns a batch's segment when it reads or
   * writes it). The values are synced before the pointers change: the segment goes afterwards.
   */
  async moveOps(
    db: Db,
    segment: number,
    live: number,
    ops: Op[],
    segments: SegmentChanges,
  ): Promise<{ batch: Batch; segment: number }[]> {
    const batches = this.#index.all.filter((b) => b.segment === segment)
    if (batches.length !== live) return []
    const stored = await getMany(
      db,
      batches.map((b) => b.key),
    )
    const pointers: Pointer[] = []
    for (const value of stored) {
      const p = value !== undefined && isPointer(value) ? decodePointer(value) : undefined
      if (typeof p !== "object" || p.segment !== segment) return []
      pointers.push(p)
    }
    const values = await Promise.all(pointers.map((p) => this.#values.read(p)))
    const parts: { parts: Buffer[]; length: number }[] = []
    for (const [i, v] of values.entries()) {
      const b = batches[i] as Batch
      if (v === undefined || typeof decodeBatch(b.key, v) === "string") return [] // left alone
      parts.push({ parts: [v], length: v.length })
    }
    const moved = await this.#values.append(parts, true, segments)
    return batches.map((batch, i) => {
      const p = moved[i] as Pointer
      ops.push({ type: "put", key: batch.key, value: encodePointer(p) })
      segments.drop(segment)
      return { batch, segment: p.segment }
    })
  }

  /**
   * The entries of batches read from disk (undefined for one that is gone), their payloads views
   * of the value; loads the slots of each batch read, which the acks of its entries need.
   */
  async #read(db: Db, batches: readonly Batch[]): Promise<(JournalEntry[] | undefined)[]> {
    const cached = this.#lastRead
    const keys = batches.filter((b) => b.key !== cached?.key).map((b) => b.key)
    const stored = keys.length > 0 ? await getMany(db, keys) : []
    const values = await Promise.all(
      stored.map((value, i) => this.#resolve(db, keys[i] as string, value)),
    )
    let v = 0
    return batches.map((b) => {
      if (b.key === cached?.key) return cached.entries
      const found = values[v++]
      if (found === undefined) return undefined
      const { value, segment } = found
      if (segment !== undefined) b.segment = segment
      const entries = decodeBatch(b.key, value)
      if (typeof entries === "string") throw corruptValue(this.#path, b.key, entries)
      b.slots ??= slotsOf(entries.map((e) => e.id))
      this.#lastRead = { key: b.key, entries }
      return entries
    })
  }
}

/** Entries cut into batches of at most MAX_BATCH entries and MAX_BATCH_BYTES bytes. */
function* chunks(entries: JournalEntry[]): Generator<JournalEntry[]> {
  let start = 0
  let bytes = 0
  for (let i = 0; i < entries.length; i++) {
    const size = (entries[i] as JournalEntry).payload.length
    if (i > start && (i - start === MAX_BATCH || bytes + size > MAX_BATCH_BYTES)) {
      yield entries.slice(start, i)
      start = i
      bytes = 0
    }
    bytes += size
  }
  if (start < entries.length) yield start === 0 ? entries : entries.slice(start)
}

function isSorted(entries: readonly JournalEntry[]): boolean {
  for (let i = 1; i < entries.length; i++)
    if ((entries[i] as JournalEntry).id <= (entries[i - 1] as JournalEntry).id) return false
  return true
}

/** The first `limit` entries of two lists sorted by id (no id in both). */
export function merge(a: JournalEntry[], b: JournalEntry[], limit: number): JournalEntry[] {
  if (a.length === 0) return b.length > limit ? b.slice(0, limit) : b
  if (b.length === 0) return a.length > limit ? a.slice(0, limit) : a
  const out: JournalEntry[] = []
  let i = 0
  let j = 0
  while (out.length < limit && (i < a.length || j < b.length)) {
    const x = a[i]
    const y = b[j]
    if (y === undefined || (x !== undefined && x.id < y.id)) {
      out.push(x as JournalEntry)
      i++
    } else {
      out.push(y)
      j++
    }
  }
  return out
}

/**
 * A payload at least this large goes to the value log (as a batch) however few entries its append
 * has: LevelDB would write it twice and copy it again in its compactions.
 */
const LARGE_PAYLOAD = 16 * 1024

export function hasLarge(entries: readonly JournalEntry[]): boolean {
  for (const e of entries) if (e.payload.length >= LARGE_PAYLOAD) return true
  return false
}
