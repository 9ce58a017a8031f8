/**
 * The records a passive logged and acked and holds for its journal (docs/pair.md, section 3.6),
 * with when each came. The journal takes the older ones; a message appended and removed while
 * both its records are held (sent and acked meanwhile, the common case) is neither written nor
 * deleted, nor even decoded. Appends and removes are held encoded, with their ids as keys (two
 * u32 each, see entries-wire.ts); a removal finds its entry by key among the held appends (their
 * ids ascend), so each record costs a look when it comes and one when it is taken. Pure, no I/O.
 */
import { maxId } from "../journal/ids.js"
import { idKey } from "./entries-wire.js"
import { decodeWire, type WireRecord } from "./link-wire.js"
import { recordBytes } from "./record-ring.js"
import type { ReplicationRecord } from "./replicated-journal.js"

/** The state of a held append's entry. */
const OPEN = 0
/** Removed by a held record: left out of both. */
const GONE = 1
/** Never left out: named by another change, appended twice, with a send id, or not new. */
const KEPT = 2

type WireAppend = Extract<WireRecord, { op: "append" }>

interface Held {
  record: WireRecord
  at: number
  bytes: number
}

interface HeldAppend extends Held {
  record: WireAppend
  /** Per entry: OPEN, GONE or KEPT; absent when nothing of it may be left out. */
  state: Uint8Array | undefined
  gone: number
}

interface HeldRemove extends Held {
  /** Per id: 1 when its append is held and left out; and how many are. */
  cancelled: Uint8Array | undefined
  gone: number
}

/** Whether key (h1, l1) is below key (h2, l2). */
function below(h1: number, l1: number, h2: number, l2: number): boolean {
  return h1 < h2 || (h1 === h2 && l1 < l2)
}

/** The id of a key. */
function idOf(keys: Uint32Array, i: number): string {
  return (
    (keys[2 * i] as number).toString(16).padStart(8, "0") +
    (keys[2 * i + 1] as number).toString(16).padStart(8, "0")
  )
}

function wireBytes(r: WireRecord): number {
  switch (r.op) {
    case "append":
      return 32 + r.entries.length
    case "remove":
      return 32 + 20 * (r.keys.length / 2)
    case "other":
      return recordBytes(r.record)
  }
}

export class HeldRecords {
  #items: Held[] = []
  #head = 0
  /** The held appends that may lose entries, in order, their ids ascending from one to the next. */
  #appends: HeldAppend[] = []
  #appendsHead = 0
  /** False once an append came whose ids do not follow the held ones: none is tracked after it. */
  #sorted = true
  /** The held append found last and its entry (removals come in runs of one append's ids). */
  #hint = 0
  #hintEntry = -1
  /** The bytes of the records held (an estimate). */
  bytes = 0
  #aboveHi = -1
  #aboveLo = -1

  /**
   * The journal's greatest id (its `lastId()`), kept up to date by the caller: an entry at or
   * below it is never left out, as the journal may hold it already.
   */
  set above(id: string | undefined) {
    ;[this.#aboveHi, this.#aboveLo] = id === undefined ? [-1, -1] : idKey(id)
  }

  get length(): number {
    return this.#items.length - this.#head
  }

  /** The seq of the newest record held. */
  get lastSeq(): number | undefined {
    return this.length === 0 ? undefined : this.#items.at(-1)?.record.seq
  }

  push(record: WireRecord, at: number): void {
    const bytes = wireBytes(record)
    this.bytes += bytes
    switch (record.op) {
      case "append":
        this.#items.push(this.#pushAppend(record, at, bytes))
        return
      case "remove": {
        const item: HeldRemove = { record, at, bytes, cancelled: undefined, gone: 0 }
        const keys = record.keys
        for (let i = 0; i < keys.length / 2; i++) {
          const at = this.#find(keys[2 * i] as number, keys[2 * i + 1] as number)
          if (at < 0) continue
          const a = this.#appends[this.#hint] as HeldAppend
          const state = a.state as Uint8Array
          if (state[at] !== OPEN) continue
          state[at] = GONE
          a.gone++
          item.gone++
          ;(item.cancelled ??= new Uint8Array(keys.length / 2))[i] = 1
        }
        this.#items.push(item)
        return
      }
      case "other":
        // Any other change to an entry appended while held keeps that entry as it is.
        for (const id of otherIds(record.record)) this.#keep(...idKey(id))
        this.#items.push({ record, at, bytes })
    }
  }

  #pushAppend(record: WireAppend, at: number, bytes: number): HeldAppend {
    const { count, keys, dedupe } = record.scan
    const item: HeldAppend = { record, at, bytes, state: undefined, gone: 0 }
    if (count === 0) return item
    const prev = this.#appends[this.#appends.length - 1]
    let ascending =
      prev === undefined ||
      this.#appendsHead === this.#appends.length ||
      below(
        prev.record.scan.keys[2 * prev.record.scan.count - 2] as number,
        prev.record.scan.keys[2 * prev.record.scan.count - 1] as number,
        keys[0] as number,
        keys[1] as number,
      )
    for (let i = 1; ascending && i < count; i++)
      if (
        !below(
          keys[2 * i - 2] as number,
          keys[2 * i - 1] as number,
          keys[2 * i] as number,
          keys[2 * i + 1] as number,
        )
      )
        ascending = false
    if (!ascending) {
      // Ids among the held ones (appended twice?) or out of order: nothing held is left out from
      // now on (until nothing is held), and what may be appended twice is kept.
      this.#sorted = false
      for (let i = 0; i < count; i++) this.#keep(keys[2 * i] as number, keys[2 * i + 1] as number)
      return item
    }
    if (!this.#sorted) return item
    const state = new Uint8Array(count)
    for (let i = 0; i < count; i++) {
      if (
        dedupe?.[i] === 1 ||
        !below(this.#aboveHi, this.#aboveLo, keys[2 * i] as number, keys[2 * i + 1] as number)
      )
        state[i] = KEPT
    }
    item.state = state
    this.#appends.push(item)
    return item
  }

  /** Where a key lies against a held append's ids: -1 before, 1 after, 0 among them. */
  static #side(a: HeldAppend, hi: number, lo: number): number {
    const { keys, count } = a.record.scan
    if (below(hi, lo, keys[0] as number, keys[1] as number)) return -1
    if (below(keys[2 * count - 2] as number, keys[2 * count - 1] as number, hi, lo)) return 1
    return 0
  }

  /**
   * The index of the held append entry with this key, or -1; its append is then
   * `#appends[#hint]`.
   */
  #find(hi: number, lo: number): number {
    const list = this.#appends
    let l = this.#appendsHead
    let h = list.length - 1
    if (l > h) return -1
    let k = this.#hint >= l && this.#hint <= h ? this.#hint : h
    if (HeldRecords.#side(list[k] as HeldAppend, hi, lo) !== 0) {
      k = -1
      while (l <= h) {
        const mid = (l + h) >>> 1
        const side = HeldRecords.#side(list[mid] as HeldAppend, hi, lo)
        if (side < 0) h = mid - 1
        else if (side > 0) l = mid + 1
        else {
          k = mid
          break
        }
      }
      if (k < 0) return -1
    }
    const keys = (list[k] as HeldAppend).record.scan.keys
    const next = this.#hint === k ? this.#hintEntry + 1 : -1
    this.#hint = k
    if (next >= 0 && keys[2 * next] === hi && keys[2 * next + 1] === lo)
      return (this.#hintEntry = next)
    let el = 0
    let eh = keys.length / 2 - 1
    while (el <= eh) {
      const mid = (el + eh) >>> 1
      const mh = keys[2 * mid] as number
      const ml = keys[2 * mid + 1] as number
      if (mh === hi && ml === lo) return (this.#hintEntry = mid)
      if (below(mh, ml, hi, lo)) el = mid + 1
      else eh = mid - 1
    }
    return -1
  }

  #keep(hi: number, lo: number): void {
    const i = this.#find(hi, lo)
    if (i < 0) return
    const state = (this.#appends[this.#hint] as HeldAppend).state as Uint8Array
    if (state[i] === OPEN) state[i] = KEPT
  }

  /** The seq of the newest record that came at or before `time`. */
  seqAt(time: number): number | undefined {
    let seq: number | undefined
    for (let i = this.#head; i < this.#items.length; i++) {
      const h = this.#items[i] as Held
      if (h.at > time) break
      seq = h.record.seq
    }
    return seq
  }

  /** The seq of the record in the middle (the older half ends there). */
  middleSeq(): number | undefined {
    return this.#items[this.#head + Math.floor((this.length - 1) / 2)]?.record.seq
  }

  /**
   * Takes the records up to seq `cut`, decoded for the journal, without the entries and removals
   * that cancel out; with the greatest id they append or schedule, left out or not (the journal
   * may not show it).
   */
  take(cut: number): { records: ReplicationRecord[]; lastId: string | undefined } {
    const taken: ReplicationRecord[] = []
    let lastId: string | undefined
    while (this.#head < this.#items.length) {
      const h = this.#items[this.#head] as Held
      const w = h.record
      if (w.seq > cut) break
      this.#items[this.#head++] = undefined as unknown as Held
      this.bytes -= h.bytes
      if (w.op === "append") {
        const a = h as HeldAppend
        const { count, keys } = w.scan
        // A tracked append's ids ascend: its last is its greatest.
        let top = count - 1
        if (a.state === undefined) {
          top = 0
          for (let i = 1; i < count; i++) {
            const [th, tl, ih, il] = [
              keys[2 * top],
              keys[2 * top + 1],
              keys[2 * i],
              keys[2 * i + 1],
            ]
            if (below(th as number, tl as number, ih as number, il as number)) top = i
          }
        }
        if (count > 0) lastId = maxId(lastId, idOf(keys, top))
        if (a.state !== undefined) this.#appends[this.#appendsHead++] = undefined as never
        if (a.gone === count) continue
        const r = decodeWire(w) as Extract<ReplicationRecord, { op: "append" }>
        const state = a.state
        taken.push(
          a.gone === 0 || state === undefined
            ? r
            : { ...r, entries: r.entries.filter((_, i) => state[i] !== GONE) },
        )
      } else if (w.op === "remove") {
        const held = h as HeldRemove
        if (held.gone === w.keys.length / 2 && w.dedupe === undefined) continue
        const r = decodeWire(w) as Extract<ReplicationRecord, { op: "remove" }>
        const cancelled = held.cancelled
        if (cancelled === undefined) taken.push(r)
        else {
          const ids = r.ids.filter((_, i) => cancelled[i] !== 1)
          if (ids.length > 0 || r.dedupe !== undefined) taken.push({ ...r, ids })
        }
      } else {
        const r = w.record
        if (r.op === "schedule") for (const e of r.entries) lastId = maxId(lastId, e.id)
        taken.push(r)
      }
    }
    this.#compact()
    return { records: taken, lastId }
  }

  #compact(): void {
    if (this.length === 0) {
      this.#items = []
      this.#head = 0
      this.#appends = []
      this.#appendsHead = 0
      this.#sorted = true
      this.#hint = 0
      this.#hintEntry = -1
      this.bytes = 0
      return
    }
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    if (this.#appendsHead > 1024 && this.#appendsHead * 2 > this.#appends.length) {
      this.#appends = this.#appends.slice(this.#appendsHead)
      this.#hint = Math.max(0, this.#hint - this.#appendsHead)
      this.#appendsHead = 0
    }
  }

  /** Puts records taken back in front (their write failed), as come at `at`: taken as they are. */
  restore(records: readonly ReplicationRecord[], at: number): void {
    const back = records.map((record) => {
      const w: WireRecord = { seq: record.seq, op: "other", record }
      return { record: w, at, bytes: recordBytes(record) }
    })
    this.#items = [...back, ...this.#items.slice(this.#head)]
    this.#head = 0
    for (const b of back) this.bytes += b.bytes
  }
}

/** The ids a decoded change names (appends and removes come encoded). */
function otherIds(r: ReplicationRecord): Iterable<string> {
  switch (r.op) {
    case "append":
    case "schedule":
    case "replay":
    case "promote":
      return r.entries.map((e) => e.id)
    case "bury":
      return r.letters.map((e) => e.id)
    case "update":
      return r.updates.map((u) => u.id)
    case "remove":
    case "purge":
    case "unschedule":
      return r.ids
    case "dedupe":
      return []
  }
}
