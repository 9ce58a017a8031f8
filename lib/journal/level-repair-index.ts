/**
 * What `LevelJournal.repair()` does to the journal's indexes and records beside its entries: the
 * send ids' records (`k:`, and their acked-time index `K:`) and the scheduled entries' due-time
 * index (`t:`), sorted out and rebuilt from what is left.
 */
import {
  DEDUPE,
  INDEX,
  SCHEDULED,
  addKey,
  decodeDedupe,
  decodeEntry,
  dedupeIndexKey,
  indexKey,
  parseDedupeIndexKey,
  parseDedupeKey,
  removeKey,
  parseIndexKey,
  keyHash,
} from "./level-format.js"
import { Repair, type Source } from "./level-repair-state.js"

/**
 * Sorts out the record of a send id: a sound one is counted (from a damaged table, written
 * again); a damaged one is dropped, with a warning. Losing a record can only let a send with its
 * send id be enqueued again (a duplicate), never lose a message.
 */
export async function examineRecord(
  repair: Repair,
  key: string,
  value: Buffer,
  source: Source,
): Promise<void> {
  const record = decodeDedupe(key, value)
  if (source === "db") {
    repair.foundSum = addKey(repair.foundSum, key)
    if (typeof record === "object") {
      repair.dedupe++
      repair.keySum = addKey(repair.keySum, key)
      return
    }
  } else {
    const now = await repair.current(key)
    // Only a newer version is damaged: the record stays as it was before it.
    if (typeof record === "string" && now !== undefined) return
    if (typeof record === "object") {
      if (now === undefined) {
        repair.dedupe++
        repair.keySum = addKey(repair.keySum, key)
      }
      repair.changes.set(key, value)
      repair.recovered++
      return
    }
  }
  repair.changes.set(key, undefined)
  repair.notes.push(
    `the record of the send id ${sendIdOf(key)} was damaged (${record}) and was dropped: a send with that id will be enqueued again`,
  )
}

/** Deletes a send id's record (that a deletion in a damaged table had deleted). */
export async function forgetRecord(repair: Repair, key: string): Promise<void> {
  const now = await repair.current(key)
  if (now === undefined) return
  const counted = repair.changes.has(key) || typeof decodeDedupe(key, now) === "object"
  repair.changes.set(key, undefined)
  if (!counted) return
  repair.dedupe--
  repair.keySum = removeKey(repair.keySum, key)
}

/** A send id as a report shows it: its text when it reads as utf-8, else its key's hex. */
function sendIdOf(key: string): string {
  const hex = key.slice(2)
  const text = Buffer.from(hex, "hex").toString("utf8")
  return text.includes("\ufffd") ? `(hex) ${hex}` : JSON.stringify(text)
}

/**
 * Makes the acked-time index (`K:` keys) agree with the send-id records the repair keeps: a `K:`
 * key without its acked record goes, an acked record without its `K:` key gets it back.
 */
export async function rebuildDedupeIndex(repair: Repair): Promise<void> {
  const stored = await repair.db.keys({ gte: DEDUPE, lt: "k;" }).all()
  const changed = [...repair.changes.keys()].filter((k) => parseDedupeKey(k) !== undefined)
  const wanted = new Set<string>()
  for (const key of new Set([...stored, ...changed])) {
    const value = await repair.current(key)
    if (value === undefined) continue
    const record = decodeDedupe(key, value)
    if (typeof record === "string" || record.ackedAt === undefined) continue
    wanted.add(dedupeIndexKey(record.ackedAt, key.slice(2)))
  }
  const present = new Set(await repair.db.keys({ gte: "K:", lt: "K;" }).all())
  for (const key of present) {
    if (wanted.has(key)) continue
    repair.changes.set(key, undefined)
    // The key of a record dropped was written with it; one with no record at all was not.
    const hex = (parseDedupeIndexKey(key) as { hex: string }).hex
    if ((await repair.db.get(DEDUPE + hex)) === undefined) repair.expectedSumDelta -= keyHash(key)
  }
  for (const key of wanted) {
    if (!present.has(key)) {
      repair.changes.set(key, Buffer.alloc(0))
      repair.expectedSumDelta += keyHash(key)
    }
    repair.keySum = addKey(repair.keySum, key)
  }
}

/**
 * Makes the due-time index (`t:` keys) agree with the scheduled entries the repair keeps: a `t:`
 * key without its `s:` entry goes, an `s:` entry without its `t:` key gets it back.
 */
export async function rebuildIndex(repair: Repair): Promise<void> {
  const stored = await repair.db.keys({ gte: SCHEDULED, lt: "s;" }).all()
  const changed = [...repair.changes.keys()].filter((k) => k.startsWith(SCHEDULED))
  const wanted = new Set<string>()
  for (const key of new Set([...stored, ...changed])) {
    const value = await repair.current(key)
    if (value === undefined) continue
    const entry = decodeEntry(key, value)
    // A damaged one was moved aside (its change deletes it) before this runs.
    if (typeof entry === "string" || entry.notBefore === undefined) continue
    wanted.add(indexKey(entry.notBefore, entry.id))
  }
  const present = new Set(await repair.db.keys({ gte: INDEX, lt: "t;" }).all())
  for (const key of present) {
    if (wanted.has(key)) continue
    repair.changes.set(key, undefined)
    // The key of an entry moved aside was written with it; one with no entry at all was not.
    const id = (parseIndexKey(key) as { id: string }).id
    if ((await repair.db.get(SCHEDULED + id)) === undefined) repair.expectedSumDelta -= keyHash(key)
  }
  for (const key of wanted) {
    if (!present.has(key)) {
      repair.changes.set(key, Buffer.alloc(0))
      repair.expectedSumDelta += keyHash(key)
    }
    repair.keySum = addKey(repair.keySum, key)
  }
}
