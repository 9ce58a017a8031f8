/**
 * The messages of the pair link as they travel (docs/pair.md, section 4): the command bytes, the
 * fields of each message, and the readers that check what the peer sent (a malformed message
 * reads as undefined and is dropped by the link). Only the shape is checked here; the journals
 * check the limits of what they write. Pure, no I/O.
 */
import { packShapes, unpackMeta, unpackShapes } from "../codec.js"
import type { PairRole, PairStateName, PeerReport } from "./pair-state.js"
import type { DeadLetter, JournalEntry } from "../journal/types.js"
import type { ReplicationOp, ReplicationRecord } from "./replicated-journal.js"

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

/** A record as it travels: its seq is implied by its place after the header's `first`. */
export function withoutSeq(record: ReplicationRecord): Partial<ReplicationRecord> {
  const op: Partial<ReplicationRecord> = { ...record }
  delete op.seq
  return op
}

/**
 * The bodies of RECORDS, COPY and HANDOVER (lists of entries, many of one shape) name each
 * shape's fields once per message (see `packShapes`). Both ends are this library.
 */
export const packBody = packShapes

function unpackBody(frame: Buffer | undefined): unknown {
  if (frame === undefined) return undefined
  try {
    return unpackShapes(frame)
  } catch {
    return undefined
  }
}

function unpack(frame: Buffer | undefined): unknown {
  if (frame === undefined) return undefined
  try {
    return unpackMeta(frame)
  } catch {
    return undefined
  }
}

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
  const entries = readEntries(unpackBody(body), kind === "dead")
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
  const entries = readEntries(unpackBody(body), false)
  if (entries === undefined) return undefined
  return { page: h["page"], last: h["last"], kind, entries }
}

/**
 * A RECORDS message: its header and its records, numbered from `first`. Only the shape is checked
 * here (a map per record with a known op); the journal checks the fields it writes.
 */
export function readRecords(
  header: Buffer | undefined,
  body: Buffer | undefined,
): { stream: string; records: ReplicationRecord[] } | undefined {
  const h = unpack(header)
  const list = unpackBody(body)
  if (!isMap(h) || typeof h["stream"] !== "string" || !isEpoch(h["first"]) || h["first"] < 1)
    return undefined
  if (!Array.isArray(list) || list.length === 0) return undefined
  const first = h["first"]
  const records: ReplicationRecord[] = []
  for (const [i, op] of (list as unknown[]).entries()) {
    if (!isMap(op) || !isOp(op)) return undefined
    records.push({ ...(op as ReplicationOp), seq: first + i })
  }
  return { stream: h["stream"], records }
}

const ID = /^[0-9a-f]{16}$/

function isId(v: unknown): v is string {
  return typeof v === "string" && ID.test(v)
}

function isIds(v: unknown): v is string[] {
  return Array.isArray(v) && v.every(isId)
}

function isTime(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v)
}

/** Optional fields may come as nil (msgpack has no undefined). */
function optional(v: unknown, check: (v: unknown) => boolean): boolean {
  return v === undefined || v === null || check(v)
}

const isString = (v: unknown): boolean => typeof v === "string"

/**
 * The fields of an entry (or a dead letter) with the types the journals write; the journal
 * checks their limits (sizes, priority range) when it writes them. Nil optional fields are
 * removed, as the journals expect `undefined`.
 */
function readEntry(v: unknown, dead: boolean): JournalEntry | undefined {
  if (!isMap(v) || !isId(v["id"]) || !(v["payload"] instanceof Uint8Array)) return undefined
  if (!isEpoch(v["attempts"]) || !isTime(v["enqueuedAt"])) return undefined
  if (
    !optional(v["lastError"], isString) ||
    !optional(v["notBefore"], isTime) ||
    !optional(v["expiresAt"], isTime) ||
    !optional(v["priority"], isEpoch) ||
    !optional(v["key"], isString) ||
    !optional(v["dedupeId"], isString) ||
    !optional(v["queue"], isString) ||
    !optional(v["headers"], (h) => isMap(h) && Object.values(h).every(isString))
  )
    return undefined
  if (dead && (typeof v["lastError"] !== "string" || !isTime(v["deadAt"]))) return undefined
  const e = withoutNils(v)
  const payload = v["payload"]
  e["payload"] = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  return e as unknown as JournalEntry
}

function readEntries(list: unknown, dead: true): DeadLetter[] | undefined
function readEntries(list: unknown, dead: boolean): JournalEntry[] | undefined
function readEntries(list: unknown, dead: boolean): JournalEntry[] | undefined {
  if (!Array.isArray(list)) return undefined
  const out: JournalEntry[] = []
  for (const v of list as unknown[]) {
    const e = readEntry(v, dead)
    if (e === undefined) return undefined
    out.push(e)
  }
  return out
}

/** Checks the fields of a record of each op (docs/pair.md, table of section 3.1), in place. */
function isOp(m: Record<string, unknown>): boolean {
  const op = m["op"] as ReplicationOp["op"]
  if (!OPS.includes(op)) return false
  const entries = (key: string, dead = false): boolean => {
    const list = readEntries(m[key], dead)
    if (list === undefined) return false
    m[key] = list
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
      return isIds(m["ids"])
    case "remove": {
      if (!isIds(m["ids"])) return false
      const d = m["dedupe"]
      if (d === undefined || d === null) {
        delete m["dedupe"]
        return true
      }
      return (
        isMap(d) &&
        Array.isArray(d["acked"]) &&
        d["acked"].every(isString) &&
        Array.isArray(d["forget"]) &&
        d["forget"].every(isString) &&
        isTime(d["at"])
      )
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

function withoutNils(u: Record<string, unknown>): Record<string, unknown> {
  // A plain loop: this runs for every entry the passive applies.
  const out: Record<string, unknown> = {}
  for (const k in u) {
    const v = u[k]
    if (v !== null && v !== undefined) out[k] = v
  }
  return out
}
