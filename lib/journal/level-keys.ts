/**
 * The keys of `LevelJournal`: their prefixes and shapes, the sortable forms of times and send ids
 * in them, and the key sum the state record keeps of them. Pure functions, no I/O.
 */

// Keys are utf8 strings: a prefix and 16 hex digits, so every range below sorts in id order and
// ends just before the next prefix character (":" + 1 = ";").
export const PENDING = "p:"
export const DEAD = "d:"
/** Entries due later (`Journal.schedule()`), under `s:<id>`. */
export const SCHEDULED = "s:"
/**
 * The due-time index of the scheduled entries: `t:<notBefore><id>` with an empty value, where
 * notBefore is 16 hex digits that sort as the number does (see `sortableTime`). So the entries
 * due first are a range read from the start of `t:`, and no scheduled entry costs memory.
 */
export const INDEX = "t:"
/**
 * The records of the callers' send ids (`send(payload, { id })`, `JournalEntry.dedupeId`):
 * `k:` + the hex digits of the send id's utf-8 (so any send id makes one unambiguous key), whose
 * value (kind 10) names the message and, once it is acked, when.
 */
export const DEDUPE = "k:"
/**
 * The acked-time index of the send ids: `K:<ackedAt><hex of the send id>` with an empty value,
 * where ackedAt is 16 hex digits as in `t:`. A record has one while it is acked, so forgetting
 * the ids acked before a time is a range read from the start of `K:`, never a scan of records.
 */
export const DEDUPE_INDEX = "K:"
/** Entries moved aside by a repair: `q:` + the key they had (kept, never read). */
export const QUARANTINE = "q:"
export const META = "m:state"

export type Prefix = typeof PENDING | typeof DEAD | typeof SCHEDULED

// ---------------------------------------------------------------------------------------------
// keys

export const ID_LENGTH = 16
export const KEY_LENGTH = 2 + ID_LENGTH

/** True for a char code of a lower-case hex digit. */
function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)
}

/**
 * Writes a stored id (16 lower-case hex digits, checked by `isStoredId`) as its 8 bytes at `off`;
 * returns the offset after them. The same bytes as `buf.write(id, off, 8, "hex")`, without a
 * call into C++ per id.
 */
export function writeId(buf: Buffer, id: string, off: number): number {
  for (let i = 0; i < ID_LENGTH; i += 2) {
    const hi = id.charCodeAt(i)
    const lo = id.charCodeAt(i + 1)
    buf[off++] = ((hi <= 57 ? hi - 48 : hi - 87) << 4) | (lo <= 57 ? lo - 48 : lo - 87)
  }
  return off
}

/** True for `p:`, `d:` or `s:` followed by 16 lower-case hex digits. */
export function isEntryKey(key: string): boolean {
  if (key.length !== KEY_LENGTH || key.charCodeAt(1) !== 0x3a) return false
  const p = key.charCodeAt(0)
  if (p !== 0x70 && p !== 0x64 && p !== 0x73) return false
  for (let i = 2; i < KEY_LENGTH; i++) if (!isHex(key.charCodeAt(i))) return false
  return true
}

const TIME_HEX = 16
/** `t:`, the due time and the id. */
export const INDEX_KEY_LENGTH = 2 + TIME_HEX + ID_LENGTH
const timeView = new DataView(new ArrayBuffer(8))

/**
 * A finite number as 16 hex digits that sort (as strings) as the numbers do: the bits of the
 * double, with the sign bit set for a positive one and every bit flipped for a negative one.
 */
export function sortableTime(t: number): string {
  timeView.setFloat64(0, t === 0 ? 0 : t) // -0 sorts as 0
  let hi = timeView.getUint32(0)
  let lo = timeView.getUint32(4)
  if (hi & 0x80000000) {
    hi = ~hi >>> 0
    lo = ~lo >>> 0
  } else hi = (hi | 0x80000000) >>> 0
  return hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0")
}

/** The number `sortableTime()` wrote. */
export function timeOf(hex: string): number {
  let hi = parseInt(hex.slice(0, 8), 16)
  let lo = parseInt(hex.slice(8, 16), 16)
  if (hi & 0x80000000) hi = (hi & 0x7fffffff) >>> 0
  else {
    hi = ~hi >>> 0
    lo = ~lo >>> 0
  }
  timeView.setUint32(0, hi)
  timeView.setUint32(4, lo)
  return timeView.getFloat64(0)
}

/** The index key of a scheduled entry. */
export function indexKey(notBefore: number, id: string): string {
  return INDEX + sortableTime(notBefore) + id
}

/** The due time and id of a `t:` key; undefined when it has another shape. */
export function parseIndexKey(key: string): { notBefore: number; id: string } | undefined {
  if (key.length !== INDEX_KEY_LENGTH || !key.startsWith(INDEX)) return undefined
  for (let i = 2; i < INDEX_KEY_LENGTH; i++) if (!isHex(key.charCodeAt(i))) return undefined
  return { notBefore: timeOf(key.slice(2, 2 + TIME_HEX)), id: key.slice(2 + TIME_HEX) }
}

/** The most utf-8 bytes of a send id (`JournalEntry.dedupeId`). */
export const MAX_DEDUPE_BYTES = 256

/** The key of a send id's record. */
export function dedupeKey(dedupeId: string): string {
  return DEDUPE + Buffer.from(dedupeId, "utf8").toString("hex")
}

/** The hex digits of a `k:` key (its send id's utf-8); undefined when it has another shape. */
export function parseDedupeKey(key: string): string | undefined {
  if (!key.startsWith(DEDUPE)) return undefined
  const hex = key.slice(2)
  return isDedupeHex(hex) ? hex : undefined
}

/** 1 to MAX_DEDUPE_BYTES bytes as lower-case hex digits. */
function isDedupeHex(hex: string): boolean {
  if (hex.length === 0 || hex.length % 2 !== 0 || hex.length > 2 * MAX_DEDUPE_BYTES) return false
  for (let i = 0; i < hex.length; i++) if (!isHex(hex.charCodeAt(i))) return false
  return true
}

/** The acked-time index key of a send id (`hex`: the digits of its `k:` key). */
export function dedupeIndexKey(ackedAt: number, hex: string): string {
  return DEDUPE_INDEX + sortableTime(ackedAt) + hex
}

/** The acked time and send id (hex) of a `K:` key; undefined when it has another shape. */
export function parseDedupeIndexKey(key: string): { ackedAt: number; hex: string } | undefined {
  if (!key.startsWith(DEDUPE_INDEX) || key.length < 2 + TIME_HEX + 2) return undefined
  const time = key.slice(2, 2 + TIME_HEX)
  for (let i = 0; i < TIME_HEX; i++) if (!isHex(time.charCodeAt(i))) return undefined
  const hex = key.slice(2 + TIME_HEX)
  return isDedupeHex(hex) ? { ackedAt: timeOf(time), hex } : undefined
}

/** True for a key a repair moved aside: `q:` + a key of the form `x:…`. */
export function isQuarantineKey(key: string): boolean {
  return key.startsWith(QUARANTINE) && key.length > 4 && key.charCodeAt(3) === 0x3a
}

/** True for a message id as the journal stores it: 16 lower-case hex digits. */
export function isStoredId(id: string): boolean {
  if (id.length !== ID_LENGTH) return false
  for (let i = 0; i < ID_LENGTH; i++) if (!isHex(id.charCodeAt(i))) return false
  return true
}

/**
 * A 32-bit hash of a key. Each step is a bijection of the state, so keys of one length that
 * differ in one character always hash differently: a sum of these over all keys changes when
 * one key does.
 */
export function keyHash(key: string): number {
  let h = 0x9747b28c
  for (let i = 0; i < key.length; i++) {
    h = Math.imul(h ^ key.charCodeAt(i), 0x5bd1e995)
    h ^= h >>> 15
  }
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export function addKey(sum: number, key: string): number {
  return (sum + keyHash(key)) >>> 0
}

export function removeKey(sum: number, key: string): number {
  return (sum - keyHash(key)) >>> 0
}

export { maxId } from "./ids.js"
