/** A message's life inside the core, and the small helpers every part of the core shares. */
import { ownBody } from "../../../lib/body.js"
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import type { JournalEntry } from "../../../lib/journal/types.js"
import type { Liveness } from "../../../lib/liveness.js"
import type { QueueState } from "./queues.js"

/**
 * "parked": ready, but an older message with the same key is not done yet (see `KeyGate`); it
 * waits outside the ready queue until that one is.
 */
export type State = "appending" | "ready" | "inflight" | "delayed" | "parked" | "done"

/**
 * The options of a send (absent ones: the defaults): its scheduling, its ordering key, its send
 * id, its queue and headers.
 */
export interface Schedule {
  /** Epoch ms before which its first attempt is not dispatched. */
  notBefore: number | undefined
  /** Epoch ms after which it is not dispatched any more: it goes to the dead letters as expired. */
  expiresAt: number | undefined
  /** 0–9, higher first. */
  priority: number
  /** Messages with the same key are processed one at a time, in send order. */
  key: string | undefined
  /** The caller's send id (`send(payload, { id })`), see `SendIds`. */
  dedupeId: string | undefined
  /** The named queue (`DEFAULT_QUEUE` when none was given). */
  queue: string
  /** The headers (frozen), delivered to the worker as `ctx.headers`. */
  headers: Readonly<Record<string, string>> | undefined
}

/** The priority of a message sent without one. */
export const DEFAULT_PRIORITY = 4

/** Who waits for a message's reply (`request()`, a queue's client). */
export interface Waiter {
  resolve: (reply: Buffer) => void
  reject: (err: Error) => void
}

/** A message held in memory (the window): ready, in flight, delayed or being journaled. */
export interface Message {
  id: string
  payload: Buffer
  /** Attempts started so far (the one in flight included). */
  attempt: number
  enqueuedAt: number
  /** performance.now() when accepted, for the latency histogram. */
  t0: number
  state: State
  /** Kept in a persistent journal: its ack, retries and dead letter are journaled too. */
  durable: boolean
  lastError: string | undefined
  notBefore: number | undefined
  worker: WorkerPeer | undefined
  /** performance.now() of the last dispatch. */
  sentAt: number
  deadline: number | undefined
  waiter: Waiter | undefined
  /** Counted in the sender's window (from `#hold` until it leaves). */
  held: boolean
  /** 0–9, higher first (see `ReadyQueue`). */
  priority: number
  /** Its ordering key (see `KeyGate`). */
  key: string | undefined
  /** Epoch ms after which it is not dispatched any more. */
  expiresAt: number | undefined
  /** The caller's send id, see `SendIds`. */
  dedupeId: string | undefined
  /** Its named queue. */
  queue: string
  /** Its headers, delivered to the worker as `ctx.headers`. */
  headers: Readonly<Record<string, string>> | undefined
}

/** A connected worker and what it holds. */
export interface WorkerPeer {
  key: string
  routingId: Buffer
  protocol: "ppp" | "ppx"
  /** The PPX version spoken with it (the lower of both sides'); 0 for a plain PPP worker. */
  version: number
  /** The queues it takes (see `Queues.attach`). */
  queues: QueueState[]
  /** Where its next round robin turn across `queues` starts. */
  turn: number
  credit: number
  /** Largest packed bodies frame to send it (see `packLimit()`). */
  packLimit: number
  /** The largest frame it takes (its announced `maxMessageSize`; Infinity when unknown). */
  maxMessageSize: number
  inflight: Map<string, Message>
  /**
   * Messages whose ack deadline passed while this (live, PPX) worker still ran them: given back
   * to the ready queue, they keep their slot here (counted against the credit) until the worker
   * answers for that attempt, so that a busy handler slot is handed no new work. Keyed by
   * attempt and id.
   */
  overdue: Map<string, Message>
  /** It takes TASK: a large task goes alone, its body as its own frame (no copy). */
  single: boolean
  /** It reports when handlers start (STARTED): ack deadlines run from then, not from dispatch. */
  starts: boolean
  liveness: Liveness
  goodbye: boolean
}

/** A message with every field set, so that all messages share one shape (fast property access). */
export function message(
  fields: Pick<Message, "id" | "payload" | "attempt" | "enqueuedAt" | "t0" | "state" | "durable">,
): Message {
  return {
    id: fields.id,
    payload: fields.payload,
    attempt: fields.attempt,
    enqueuedAt: fields.enqueuedAt,
    t0: fields.t0,
    state: fields.state,
    durable: fields.durable,
    lastError: undefined,
    notBefore: undefined,
    worker: undefined,
    sentAt: 0,
    deadline: undefined,
    waiter: undefined,
    held: false,
    priority: DEFAULT_PRIORITY,
    key: undefined,
    expiresAt: undefined,
    dedupeId: undefined,
    queue: DEFAULT_QUEUE,
    headers: undefined,
  }
}

/** Gives a new message its scheduling options (none: it keeps the defaults). */
export function scheduled(m: Message, schedule: Schedule | undefined): Message {
  if (schedule === undefined) return m
  m.priority = schedule.priority
  m.key = schedule.key
  m.expiresAt = schedule.expiresAt
  m.dedupeId = schedule.dedupeId
  m.queue = schedule.queue
  m.headers = schedule.headers
  return m
}

/**
 * A new message's journal entry. Entries come in two shapes only, with and without scheduling
 * options (absent ones undefined), so that the journal's encoder reads their fields at one or two
 * known offsets, never through a dictionary lookup.
 */
export function newEntry(
  id: string,
  payload: Buffer,
  enqueuedAt: number,
  schedule: Schedule | undefined,
): JournalEntry {
  if (schedule === undefined) return { id, payload, attempts: 0, enqueuedAt }
  return {
    id,
    payload,
    attempts: 0,
    enqueuedAt,
    notBefore: schedule.notBefore,
    expiresAt: schedule.expiresAt,
    priority: schedule.priority === DEFAULT_PRIORITY ? undefined : schedule.priority,
    key: schedule.key,
    dedupeId: schedule.dedupeId,
    queue: schedule.queue === DEFAULT_QUEUE ? undefined : schedule.queue,
    headers: schedule.headers,
  }
}

/** A new message's entry (see `newEntry`) with another payload, in the same shape. */
export function withPayload(e: JournalEntry, payload: Buffer): JournalEntry {
  if (
    e.notBefore === undefined &&
    e.expiresAt === undefined &&
    e.priority === undefined &&
    e.key === undefined &&
    e.dedupeId === undefined &&
    e.queue === undefined &&
    e.headers === undefined
  )
    return { id: e.id, payload, attempts: e.attempts, enqueuedAt: e.enqueuedAt }
  return {
    id: e.id,
    payload,
    attempts: e.attempts,
    enqueuedAt: e.enqueuedAt,
    notBefore: e.notBefore,
    expiresAt: e.expiresAt,
    priority: e.priority,
    key: e.key,
    dedupeId: e.dedupeId,
    queue: e.queue,
    headers: e.headers,
  }
}

/** True when the message's time to live has run out at `now` (epoch ms). */
export function expired(m: Message, now: number): boolean {
  return m.expiresAt !== undefined && m.expiresAt <= now
}

/** A message read back from the journal (a restart's backlog, a replayed dead letter). */
export function fromEntry(e: JournalEntry, durable: boolean): Message {
  // The fields in the order message() sets them, so that all messages share one shape; without
  // the object message() takes (a backlog pages in thousands of these at a time).
  return {
    id: e.id,
    payload: e.payload,
    attempt: e.attempts,
    enqueuedAt: e.enqueuedAt,
    t0: sinceEpoch(e.enqueuedAt),
    state: "ready",
    durable,
    lastError: e.lastError,
    notBefore: undefined,
    worker: undefined,
    sentAt: 0,
    deadline: undefined,
    waiter: undefined,
    held: false,
    priority: e.priority ?? DEFAULT_PRIORITY,
    key: e.key,
    expiresAt: e.expiresAt,
    dedupeId: e.dedupeId,
    queue: e.queue ?? DEFAULT_QUEUE,
    headers: e.headers,
  }
}

/**
 * Gives a message that is going to wait in memory (a retry, a delay) a payload of its own: a view
 * of a larger buffer (a batch the journal read back, see `BatchStore.pending()`) is copied, so
 * that a few waiting messages do not keep whole batches alive. A split body (lib/body.ts) is the
 * producer's own already.
 */
export function ownPayload(m: Message): void {
  m.payload = ownBody(m.payload)
}

/** The performance.now() time of an epoch-ms timestamp. */
export function sinceEpoch(epochMs: number): number {
  return performance.now() - (Date.now() - epochMs)
}

export function byId(a: Message, b: Message): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
