/**
 * The ring of a pair's active: the newest records of the current stream, bounded in count and
 * bytes, from which a passive that fell behind is caught up (the tail), with the running totals
 * that flow control and the watermark read (bytes sent, own ids replicated). Pure, no I/O.
 */
import { Fifo } from "../fifo.js"
import { entriesBytes } from "./pages.js"
import type { ReplicationRecord } from "./replicated-journal.js"

export interface RingRecord {
  seq: number
  /** The record as it travels (see `toWire`): encoded when it was emitted, sent from here. */
  wire: Record<string, unknown>
  bytes: number
  /** Bytes of the stream up to and including this record. */
  cumBytes: number
  /** The greatest own id appended or scheduled up to and including this record. */
  cumOwn: string | undefined
}

/** The records of the current stream kept for catch-up: the newest, bounded in count and bytes. */
export class RecordRing {
  readonly #items = new Fifo<RingRecord>()
  /** The seq of the oldest record kept (the next one when empty). */
  first = 1
  bytes = 0
  /** cumBytes and cumOwn of the record before `first`. */
  evicted: { cumBytes: number; cumOwn: string | undefined } = { cumBytes: 0, cumOwn: undefined }

  get size(): number {
    return this.#items.length
  }

  get(seq: number): RingRecord | undefined {
    return this.#items.at(seq - this.first)
  }

  push(r: RingRecord): void {
    this.#items.push(r)
    this.bytes += r.bytes
  }

  /** Drops the oldest records beyond the bounds; the newest one always stays. */
  trim(records: number, bytes: number): void {
    while (this.size > 1 && (this.size > records || this.bytes > bytes)) {
      const r = this.#items.shift() as RingRecord
      this.first++
      this.bytes -= r.bytes
      this.evicted = { cumBytes: r.cumBytes, cumOwn: r.cumOwn }
    }
  }
}

/** An estimate of a record's size on the wire (whole bodies: an 8 MiB payload counts 8 MiB). */
export function recordBytes(r: ReplicationRecord): number {
  switch (r.op) {
    case "append":
    case "schedule":
    case "replay":
    case "promote":
      return 32 + entriesBytes(r.entries)
    case "bury":
      return 32 + entriesBytes(r.letters)
    case "remove":
      return (
        32 +
        20 * r.ids.length +
        (r.dedupe === undefined ? 0 : 40 * (r.dedupe.acked.length + r.dedupe.forget.length))
      )
    case "purge":
    case "unschedule":
      return 32 + 20 * r.ids.length
    case "update":
      return 32 + r.updates.reduce((n, u) => n + 48 + (u.lastError?.length ?? 0), 0)
    case "dedupe":
      return 32
  }
}
