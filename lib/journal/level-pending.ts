/**
 * The writes of a `LevelJournal` that change its pending entries, loose (`p:` keys) or in batches
 * (see level-batch-store.ts): append, remove, update, bury, and the move of dead letters or
 * scheduled entries back to pending (replay, promote). Each builds the operations of one atomic
 * write and commits them through its host; `LevelJournal` checks the arguments and runs its writes
 * one at a time.
 */
import { getMany, hasMany, type Db } from "./level-db.js"
import { DEAD, PENDING, added, encodeEntry, removed, type Counters } from "./level-format.js"
import { SlotChanges, type Batch } from "./level-batch.js"
import { hasLarge, type BatchStore, type Op } from "./level-batch-store.js"
import type { SendIdRecords } from "./level-dedupe.js"
import { SegmentChanges } from "./level-values.js"
import type { DeadLetter, JournalEntry, JournalUpdate } from "./types.js"

/** What the writes need of the journal. */
export interface PendingWriteHost {
  readonly batches: BatchStore
  readonly sendIds: SendIdRecords
  /** Appends of at least this many fresh entries are written as a batch. */
  readonly minBatch: number
  /** The greatest id ever stored. */
  lastId(): string | undefined
  /** A copy of the counters, for a write to change and commit. */
  meta(): Counters
  /** Writes `ops` with the counters `next` in one LevelDB batch, and takes them. */
  commit(db: Db, ops: Op[], next: Counters, sync: boolean, segments: SegmentChanges): Promise<void>
  /** Decodes a stored entry; a damaged one is an error. */
  decode(key: string, value: Buffer): JournalEntry | DeadLetter
}

/** Appends `list` (one entry per id), with the records of their send ids. */
export async function appendWrite(
  h: PendingWriteHost,
  db: Db,
  list: readonly JournalEntry[],
  sync: boolean,
): Promise<void> {
  // Ids come from an IdGenerator seeded with lastId(): a new id is greater than every id ever
  // stored, so only an id at or below lastId can already exist and needs a look-up.
  const lastId = h.lastId()
  const fresh: JournalEntry[] = []
  const old: JournalEntry[] = []
  for (const e of list) (lastId === undefined || e.id > lastId ? fresh : old).push(e)
  const next = h.meta()
  const segments = new SegmentChanges()
  const ops: Op[] = []
  const changes = new SlotChanges()
  let batches: Batch[] = []
  if (fresh.length >= h.minBatch || (h.minBatch < Infinity && hasLarge(fresh)))
    batches = await h.batches.appendOps(fresh, ops, next, sync, segments)
  else {
    for (const e of fresh) {
      ops.push({ type: "put", key: PENDING + e.id, value: encodeEntry(e, undefined) })
      added(next, PENDING + e.id)
    }
  }
  if (old.length > 0) {
    // An id that is pending already is written again under its `p:` key: moved out of its
    // batch when it is in one, counted once either way.
    const { slots, loose } = await h.batches.locate(
      db,
      old.map((e) => e.id),
    )
    for (const [b, slot] of slots) changes.clear(b, slot)
    const found =
      loose.length > 0 && lastId !== undefined
        ? await hasMany(
            db,
            loose.map((id) => PENDING + id),
          )
        : []
    const existing = new Set(loose.filter((_, i) => found[i]))
    for (const e of old) {
      ops.push({ type: "put", key: PENDING + e.id, value: encodeEntry(e, undefined) })
      if (!existing.has(e.id)) added(next, PENDING + e.id)
    }
  }
  // The records of their send ids: in this very write, so a message is never without its
  // record, nor a record without its message.
  await h.sendIds.rememberOps(db, list, ops, next)
  await commitWith(h, db, { ops, next, segments, changes }, sync)
  h.batches.added(batches)
}

/**
 * Deletes the pending entries `wanted`; with `dedupe`, marks the send ids `acked` as acked and
 * forgets those in `forget`, in the same write.
 */
export async function removeWrite(
  h: PendingWriteHost,
  db: Db,
  wanted: readonly string[],
  dedupe: { acked: readonly string[]; forget: readonly string[]; at: number } | undefined,
  acked: string[],
  forget: string[],
): Promise<void> {
  const changes = new SlotChanges()
  const loose = await h.batches.visit(db, wanted, (b, slot) => changes.clear(b, slot))
  const next = h.meta()
  const segments = new SegmentChanges()
  const ops: Op[] = []
  if (loose.length > 0) {
    const keys = loose.map((id) => PENDING + id)
    const found = await hasMany(db, keys)
    keys.forEach((key, i) => {
      if (!found[i]) return
      ops.push({ type: "del", key })
      removed(next, key)
    })
  }
  if (dedupe !== undefined) await h.sendIds.ackOps(db, acked, forget, dedupe.at, ops, next)
  await commitWith(h, db, { ops, next, segments, changes }, false, true)
}

/** Writes the new attempts (and last error, due time) of the pending entries in `byId`. */
export async function updateWrite(
  h: PendingWriteHost,
  db: Db,
  byId: ReadonlyMap<string, JournalUpdate>,
): Promise<void> {
  const { slots, loose } = await h.batches.locate(db, [...byId.keys()])
  const ops: Op[] = []
  const next = h.meta()
  const segments = new SegmentChanges()
  const changes = new SlotChanges()
  const updated = (old: JournalEntry, u: JournalUpdate): Buffer => {
    const entry: JournalEntry = {
      id: u.id,
      payload: old.payload,
      attempts: u.attempts,
      enqueuedAt: old.enqueuedAt,
    }
    if (u.lastError !== undefined) entry.lastError = u.lastError
    if (u.notBefore !== undefined) entry.notBefore = u.notBefore
    keepFields(entry, old, true)
    return encodeEntry(entry, undefined)
  }
  // An entry of a batch moves to a `p:` key of its own, which holds its attempts from now on.
  const inBatches = await h.batches.entries(db, [...new Set(slots.map(([b]) => b))])
  for (const [b, slot, id] of slots) {
    const old = inBatches.get(b)?.[slot] as JournalEntry
    changes.clear(b, slot)
    ops.push({
      type: "put",
      key: PENDING + id,
      value: updated(old, byId.get(id) as JournalUpdate),
    })
    added(next, PENDING + id)
  }
  const keys = loose.map((id) => PENDING + id)
  const values = keys.length > 0 ? await getMany(db, keys) : []
  loose.forEach((id, i) => {
    const key = keys[i] as string
    const value = values[i]
    if (value === undefined) return // acked meanwhile: never resurrect it
    const u = byId.get(id) as JournalUpdate
    ops.push({ type: "put", key, value: updated(h.decode(key, value), u) })
  })
  await commitWith(h, db, { ops, next, segments, changes }, false, true)
}

/**
 * Moves pending entries to the dead letters: `byId` holds each letter's value, `unnamed` the
 * letters given without a send id.
 */
export async function buryWrite(
  h: PendingWriteHost,
  db: Db,
  byId: Map<string, Buffer>,
  unnamed: ReadonlyMap<string, DeadLetter>,
): Promise<void> {
  const ids = [...byId.keys()]
  const { slots, loose } = await h.batches.locate(db, ids)
  const changes = new SlotChanges()
  for (const [b, slot] of slots) changes.clear(b, slot)
  const found = await getMany(db, [
    ...loose.map((id) => PENDING + id),
    ...ids.map((id) => DEAD + id),
  ])
  // A letter given without the send id of its pending entry keeps it all the same, so that
  // purgeDead() forgets the send id with the letter.
  const keep = (d: DeadLetter, stored: JournalEntry): void => {
    if (stored.dedupeId !== undefined)
      byId.set(d.id, encodeEntry({ ...d, dedupeId: stored.dedupeId }, d.deadAt))
  }
  if (unnamed.size > 0) {
    const inBatches = await h.batches.entries(db, [...new Set(slots.map(([b]) => b))])
    for (const [b, slot, id] of slots) {
      const d = unnamed.get(id)
      if (d !== undefined) keep(d, inBatches.get(b)?.[slot] as JournalEntry)
    }
    loose.forEach((id, i) => {
      const d = unnamed.get(id)
      const value = found[i]
      if (d !== undefined && value !== undefined) keep(d, h.decode(PENDING + id, value))
    })
  }
  const ops: Op[] = []
  const next = h.meta()
  const segments = new SegmentChanges()
  loose.forEach((id, i) => {
    if (!found[i]) return
    ops.push({ type: "del", key: PENDING + id })
    removed(next, PENDING + id)
  })
  ids.forEach((id, i) => {
    if (!found[loose.length + i]) added(next, DEAD + id)
    ops.push({ type: "put", key: DEAD + id, value: byId.get(id) as Buffer })
  })
  await commitWith(h, db, { ops, next, segments, changes }, false)
}

/**
 * Moves the entries stored under `from` + id (dead letters, scheduled entries) to pending, in one
 * write: `move` gives for each one found the pending value and the other keys to delete with it.
 * An id pending already (appended again) is replaced, and counted once, as `append()` does.
 */
export async function toPendingWrite<T>(
  h: PendingWriteHost,
  db: Db,
  from: string,
  wanted: readonly string[],
  sync: boolean,
  move: (id: string, stored: Buffer) => { drop: string[]; value: Buffer; out: T },
): Promise<T[]> {
  const values = await getMany(
    db,
    wanted.map((id) => from + id),
  )
  const present = wanted.filter((_, i) => values[i] !== undefined)
  if (present.length === 0) return []
  const { slots, loose } = await h.batches.locate(db, present)
  const changes = new SlotChanges()
  for (const [b, slot] of slots) changes.clear(b, slot)
  const found = await hasMany(
    db,
    loose.map((id) => PENDING + id),
  )
  const pendingKey = new Set(loose.filter((_, i) => found[i]))
  const ops: Op[] = []
  const out: T[] = []
  const next = h.meta()
  const segments = new SegmentChanges()
  wanted.forEach((id, i) => {
    const stored = values[i]
    if (stored === undefined) return
    const moved = move(id, stored)
    for (const key of [from + id, ...moved.drop]) {
      ops.push({ type: "del", key })
      removed(next, key)
    }
    ops.push({ type: "put", key: PENDING + id, value: moved.value })
    if (!pendingKey.has(id)) added(next, PENDING + id)
    out.push(moved.out)
  })
  await commitWith(h, db, { ops, next, segments, changes }, sync)
  return out
}

/**
 * Adds the changes to batch entries to a write's operations and commits it in one LevelDB batch;
 * the batches' index takes the changes once it is committed. With `skipEmpty`, a write with
 * nothing to do is not committed.
 */
async function commitWith(
  h: PendingWriteHost,
  db: Db,
  w: { ops: Op[]; next: Counters; segments: SegmentChanges; changes: SlotChanges },
  sync: boolean,
  skipEmpty = false,
): Promise<void> {
  h.batches.changeOps(w.changes, w.ops, w.next, w.segments)
  if (skipEmpty && w.ops.length === 0) return
  await h.commit(db, w.ops, w.next, sync, w.segments)
  h.batches.applied(w.changes)
}

/**
 * Copies what a message keeps across its attempts (`expiry` true) and a replay: its priority,
 * key, send id, queue and headers, and its expiry time except on a replay (a replayed message
 * past it would be dead-lettered again at once).
 */
export function keepFields(to: JournalEntry, from: JournalEntry, expiry: boolean): void {
  if (expiry && from.expiresAt !== undefined) to.expiresAt = from.expiresAt
  if (from.priority !== undefined) to.priority = from.priority
  if (from.key !== undefined) to.key = from.key
  if (from.dedupeId !== undefined) to.dedupeId = from.dedupeId
  if (from.queue !== undefined) to.queue = from.queue
  if (from.headers !== undefined) to.headers = from.headers
}
