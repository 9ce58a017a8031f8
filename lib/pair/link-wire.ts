/**
 * The messages of the pair link as they travel (docs/pair.md, section 4): the command bytes, the
 * fields of each message, and the readers that check what the peer sent (a malformed message
 * reads as undefined and is dropped by the link). Only the shape is checked here; the journals
 * check the limits of what they write. Pure, no I/O.
 */
import { packShapes, unpackMeta, unpackShapes } from "../codec.js"
import {
  decodeEntries,
  decodeIds,
  encodeEntries,
  encodeIds,
  idKeys,
  scanEntries,
  type EntryKeys,
} from "./entries-wire.js"
import type { PairRole, PairStateName, PeerReport } from "./pair-state.js"
import type { DeadLetter, JournalEntry } from "../journal/types.js"
import type { DedupeChanges, ReplicationOp, ReplicationRecord } from "./replicated-journal.js"

/** Command bytes of the pair link (docs/pair.md, section 4). */
export const PAIR_COMMAND = Object.freeze({
  HELLO: 0x30,
  HEARTBEAT: 0x31,
  RECORDS: 0x32,
  ACK: 0x33,
  COPY: 0x34,
  COPY_END: 0x35,
  HANDOVER: 0x36,
  HANDED: 0x37,
} as const)

/** The kinds of entries a COPY or HANDOVER page holds. */
export type PageKind = "pending" | "scheduled" | "dead"
const KINDS: readonly PageKind[] = ["pending", "scheduled", "dead"]

export const PAIR_LINK_VERSION = 1

export const ROLES: readonly PairRole[] = ["primary", "backup"]
const STATES: readonly PairStateName[] = ["primary", "backup", "active", "passive"]
const OPS: readonly ReplicationOp["op"][] = [
  "append",
  "schedule",
  "remove",
  "update",
  "bury",
  "replay",
  "purge",
  "promote",
  "unschedule",
  "dedupe",
]

/**
 * What a node adds to its HELLO (docs/pair.md, section 4): the pair's sender id, and, when it
 * asks to be caught up, the stream it applied last, how far, and a request number (a new number
 * is a new request, even for the same position).
 */
export interface HelloFields {
  sender?: string
  stream?: string
  applied?: number
  request?: number
}

/** What the peer said in its HELLO. */
export interface PeerHello extends PeerReport, HelloFields {
  /** A random id of the peer's process: a new one means the peer restarted. */
  node: string
}

/** A page of a full copy (active → passive). */
export interface CopyPage {
  stream: string
  s0: number
  page: number
  kind: PageKind
  entries: JournalEntry[] | DeadLetter[]
}

/** A page of a hand-over (returning → active). */
export interface HandoverPage {
  page: number
  last: boolean
  kind: "pending" | "scheduled"
  entries: JournalEntry[]
}

/**
 * A record as it travels (docs/pair.md, section 4): without its seq, which its place after the
 * header's `first` implies, and with its entries and ids in binary (entries-wire.ts).
 */
export function toWire(record: ReplicationRecord): Record<string, unknown> {
  switch (record.op) {
    case "append":
    case "schedule":
    case "replay":
    case "promote":
      return { op: record.op, entries: encodeEntries(record.entries) }
    case "bury":
      return { op: record.op, letters: encodeEntries(record.letters, true) }
    case "remove":
      return record.dedupe === undefined
        ? { op: record.op, ids: encodeIds(record.ids) }
        : { op: record.op, ids: encodeIds(record.ids), dedupe: record.dedupe }
    case "purge":
    case "unschedule":
      return { op: record.op, ids: encodeIds(record.ids) }
    case "update":
      return { op: record.op, updates: record.updates }
    case "dedupe":
      return { op: record.op, before: record.before }
  }
}

/**
 * The list of records of a RECORDS body: each record's fields once per message (see
 * `packShapes`). Both ends are this library.
 */
export const packRecords = packShapes

/** What `read` makes of a frame; undefined when there is none or it does not read. */
function tryRead(frame: Buffer | undefined, read: (frame: Buffer) => unknown): unknown {
  if (frame === undefined) return undefined
  try {
    return read(frame)
  } catch {
    return undefined
  }
}

const unpackBody = (frame: Buffer | undefined): unknown => tryRead(frame, unpackShapes)
const unpack = (frame: Buffer | undefined): unknown => tryRead(frame, unpackMeta)

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v)
}

function isEpoch(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0
}

export function readReport(frame: Buffer | undefined): PeerReport | undefined {
  const m = unpack(frame)
  if (!isMap(m)) return undefined
  const { role, state, epoch } = m
  if (!ROLES.includes(role as PairRole) || !STATES.includes(state as PairStateName))
    return undefined
  if (!isEpoch(epoch)) return undefined
  return { role: role as PairRole, state: state as PairStateName, epoch }
}

/** A HANDED message: the hand-over page the active took. */
export function readHanded(frame: Buffer | undefined): { page: number } | undefined {
  const m = unpack(frame)
  if (!isMap(m) || !isEpoch(m["page"])) return undefined
  return { page: m["page"] }
}

export function readHello(frame: Buffer | undefined): PeerHello | undefined {
  const report = readReport(frame)
  const m = unpack(frame)
  if (report === undefined || !isMap(m)) return undefined
  if (typeof m["version"] !== "number" || m["version"] < 1) return undefined
  if (typeof m["node"] !== "string" || m["node"].length === 0) return undefined
  const hello: PeerHello = { ...report, node: m["node"] }
  if (typeof m["sender"] === "string") hello.sender = m["sender"]
  if (typeof m["stream"] === "string") hello.stream = m["stream"]
  if (isEpoch(m["applied"])) hello.applied = m["applied"]
  if (isEpoch(m["request"])) hello.request = m["request"]
  return hello
}

export function readAck(
  frame: Buffer | undefined,
): { stream: string; seq: number; page?: number } | undefined {
  const m = unpack(frame)
  if (!isMap(m) || typeof m["stream"] !== "string" || !isEpoch(m["seq"])) return undefined
  if (m["page"] !== undefined && !isEpoch(m["page"])) return undefined
  return isEpoch(m["page"])
    ? { stream: m["stream"], seq: m["seq"], page: m["page"] }
    : { stream: m["stream"], seq: m["seq"] }
}

export function readCopy(
  header: Buffer | undefined,
  body: Buffer | undefined,
): CopyPage | undefined {
  const h = unpack(header)
  if (!isMap(h) || typeof h["stream"] !== "string" || !isEpoch(h["s0"]) || !isEpoch(h["page"]))
    return undefined
  const kind = h["kind"] as PageKind
  if (!KINDS.includes(kind)) return undefined
  const entries = body && decodeEntries(body, kind === "dead")
  if (entries === undefined) return undefined
  return { stream: h["stream"], s0: h["s0"], page: h["page"], kind, entries }
}

export function readCopyEnd(
  frame: Buffer | undefined,
): { stream: string; s0: number; pages: number; lastId?: string } | undefined {
  const m = unpack(frame)
  if (!isMap(m) || typeof m["stream"] !== "string" || !isEpoch(m["s0"]) || !isEpoch(m["pages"]))
    return undefined
  const end = { stream: m["stream"], s0: m["s0"], pages: m["pages"] }
  if (m["lastId"] === undefined || m["lastId"] === null) return end
  if (!isId(m["lastId"])) return undefined
  return { ...end, lastId: m["lastId"] }
}

export function readHandover(
  header: Buffer | undefined,
  body: Buffer | undefined,
): HandoverPage | undefined {
  const h = unpack(header)
  if (!isMap(h) || !isEpoch(h["page"]) || typeof h["last"] !== "boolean") return undefined
  const kind = h["kind"]
  if (kind !== "pending" && kind !== "scheduled") return undefined
  const entries = body && decodeEntries(body, false)
  if (entries === undefined) return undefined
  return { page: h["page"], last: h["last"], kind, entries }
}

/**
 * A record as a passive holds it (docs/pair.md, section 3.6): an append's entries and a remove's
 * ids still encoded (checked, with their ids as keys), any other change decoded.
 */
export type WireRecord =
  | { seq: number; op: "append"; entries: Buffer; scan: EntryKeys }
  | { seq: number; op: "remove"; ids: Buffer; keys: Uint32Array; dedupe: DedupeChanges | undefined }
  | { seq: number; op: "other"; record: ReplicationRecord }

/** A RECORDS message as read: its records (numbered from `first`), and its body as it came. */
export interface RecordsBatch {
  stream: string
  first: number
  records: WireRecord[]
  body: Buffer
}

/**
 * A RECORDS message: its header and its records, numbered from `first`, checked (a malformed one
 * reads as undefined).
 */
export function readRecords(
  header: Buffer | undefined,
  body: Buffer | undefined,
): RecordsBatch | undefined {
  const h = unpack(header)
  if (!isMap(h) || typeof h["stream"] !== "string" || !isEpoch(h["first"]) || h["first"] < 1)
    return undefined
  const records = body && wireRecordsOf(h["first"], body)
  if (records === undefined) return undefined
  return { stream: h["stream"], first: h["first"], records, body: body as Buffer }
}

/** The records of a RECORDS body (as the passive's log keeps it too), numbered from `first`. */
export function wireRecordsOf(first: number, body: Buffer): WireRecord[] | undefined {
  const list = unpackBody(body)
  if (!Array.isArray(list) || list.length === 0) return undefined
  const records: WireRecord[] = []
  for (const [i, op] of (list as unknown[]).entries()) {
    if (!isMap(op)) return undefined
    const seq = first + i
    const bytes = op["op"] === "append" ? op["entries"] : op["op"] === "remove" ? op["ids"] : 0
    if (bytes instanceof Uint8Array) {
      const buf = asBuffer(bytes)
      if (op["op"] === "append") {
        const scan = scanEntries(buf)
        if (scan === undefined) return undefined
        records.push({ seq, op: "append", entries: buf, scan })
        continue
      }
      const keys = idKeys(buf)
      const dedupe = op["dedupe"]
      if (keys === undefined || !optional(dedupe, isDedupeChanges)) return undefined
      records.push({ seq, op: "remove", ids: buf, keys, dedupe: (dedupe ?? undefined) as never })
      continue
    }
    if (!isOp(op)) return undefined
    records.push({ seq, op: "other", record: { ...(op as ReplicationOp), seq } })
  }
  return records
}

/** The record a held one stands for. */
export function decodeWire(w: WireRecord): ReplicationRecord {
  switch (w.op) {
    case "append": {
      const entries = decodeEntries(w.entries, false)
      // scanEntries() read these very bytes.
      if (entries === undefined) throw new Error(`record ${w.seq}: its entries do not read`)
      return { op: "append", entries, seq: w.seq }
    }
    case "remove": {
      const ids = decodeIds(w.ids) as string[]
      return w.dedupe === undefined
        ? { op: "remove", ids, seq: w.seq }
        : { op: "remove", ids, dedupe: w.dedupe, seq: w.seq }
    }
    case "other":
      return w.record
  }
}

/** The records of a RECORDS body, decoded. */
export function recordsOf(first: number, body: Buffer): ReplicationRecord[] | undefined {
  return wireRecordsOf(first, body)?.map(decodeWire)
}

const ID = /^[0-9a-f]{16}$/

function isId(v: unknown): v is string {
  return typeof v === "string" && ID.test(v)
}

function isTime(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v)
}

/** Optional fields may come as nil (msgpack has no undefined). */
function optional(v: unknown, check: (v: unknown) => boolean): boolean {
  return v === undefined || v === null || check(v)
}

const isString = (v: unknown): boolean => typeof v === "string"

/** Checks the fields of a record of each op (docs/pair.md, table of section 3.1), in place. */
function isOp(m: Record<string, unknown>): boolean {
  const op = m["op"] as ReplicationOp["op"]
  if (!OPS.includes(op)) return false
  const entries = (key: string, dead = false): boolean => {
    const bytes = m[key]
    const list = bytes instanceof Uint8Array ? decodeEntries(asBuffer(bytes), dead) : undefined
    if (list === undefined) return false
    m[key] = list
    return true
  }
  const ids = (): boolean => {
    const bytes = m["ids"]
    const list = bytes instanceof Uint8Array ? decodeIds(asBuffer(bytes)) : undefined
    if (list === undefined) return false
    m["ids"] = list
    return true
  }
  switch (op) {
    case "append":
    case "schedule":
    case "replay":
    case "promote":
      return entries("entries")
    case "bury":
      return entries("letters", true)
    case "purge":
    case "unschedule":
      return ids()
    case "remove": {
      if (!ids()) return false
      const d = m["dedupe"]
      if (d === undefined || d === null) {
        delete m["dedupe"]
        return true
      }
      return isDedupeChanges(d)
    }
    case "update": {
      const updates = m["updates"]
      if (
        !Array.isArray(updates) ||
        !(updates as unknown[]).every(
          (u) =>
            isMap(u) &&
            isId(u["id"]) &&
            isEpoch(u["attempts"]) &&
            optional(u["lastError"], isString) &&
            optional(u["notBefore"], isTime),
        )
      )
        return false
      m["updates"] = (updates as Record<string, unknown>[]).map(withoutNils)
      return true
    }
    case "dedupe":
      return isTime(m["before"])
  }
}

/** A Buffer over the bytes of `v` (msgpack's bin may come as a plain Uint8Array). */
function asBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
}

function isDedupeChanges(d: unknown): boolean {
  return (
    isMap(d) &&
    Array.isArray(d["acked"]) &&
    d["acked"].every(isString) &&
    Array.isArray(d["forget"]) &&
    d["forget"].every(isString) &&
    isTime(d["at"])
  )
}

function withoutNils(u: Record<string, unknown>): Record<string, unknown> {
  // A plain loop: this runs for every entry the passive applies.
  const out: Record<string, unknown> = {}
  for (const k in u) {
    const v = u[k]
    if (v !== null && v !== undefined) out[k] = v
  }
  return out
}
