/**
 * Dispatch: ready messages to workers with free credit, in batches (TASKS), alone when large
 * (TASK), with each task's queue and headers for a PPX/2 worker (a metas frame, TASKM), or one by
 * one to a plain PPP worker.
 */
import { bodyLength, bodyParts, joinBody } from "../../../lib/body.js"
import { DEFAULT_QUEUE } from "../../../lib/headers.js"
import {
  FRAME_EMPTY,
  FRAME_TASK,
  FRAME_TASKM,
  FRAME_TASKS,
  SINGLE_BYTES,
  encodeEnvelope,
  encodeTaskMeta,
  packBodies,
  packMetas,
  packTaskEnvelopes,
} from "../../../lib/protocol.js"
import type { Message, WorkerPeer } from "./message.js"
import type { Queues } from "./queues.js"
import type { SessionsHost } from "./sessions.js"

/** What dispatch needs of the core. */
export type DispatchHost = Pick<
  SessionsHost,
  "settings" | "keys" | "workers" | "counters" | "queues" | "write"
>

/**
 * Hands ready messages to workers with free credit, in turn, in batches. A message larger than
 * a worker takes (its announced `maxMessageSize`) is never sent to it, where libzmq would drop
 * the connection and everything else in flight on it: it stays ready for a worker that takes
 * it. To a worker that takes TASK, a message of `SINGLE_BYTES` or more goes alone (a batch is
 * cut before it), so that its body is sent as its own frame, never copied into a packed one.
 */
export function dispatchReady(h: DispatchHost, ready: Queues, expire: (m: Message) => void): void {
  const { maxBatch } = h.settings
  const keys = h.keys
  const now = Date.now()
  // Turns in a row that sent nothing: one per worker means nothing ready fits a free worker.
  for (let idle = 0; ready.size > 0 && idle < h.workers.size;) {
    const next = h.workers.nextFree()
    if (!next) return
    const { worker: w, free } = next
    const n = Math.min(free, maxBatch)
    const batch: Message[] = []
    const skipped: Message[] = [] // too large for this worker; looked at no more than a batch
    let bytes = 0
    while (batch.length < n && skipped.length < maxBatch) {
      const m = ready.takeFor(w)
      if (!m) break
      if (m.expiresAt !== undefined && m.expiresAt <= now) {
        expire(m)
        continue
      }
      if (m.key !== undefined && !keys.mayGo(m)) {
        keys.park(m) // behind an older message of its key; made ready when that one is done
        continue
      }
      // A PPX/2 worker also gets its meta record, in a frame of its own.
      const meta =
        w.version >= 2 && (m.headers !== undefined || m.queue !== DEFAULT_QUEUE)
          ? taskMeta(h, m).length
          : 0
      const size = 4 + bodyLength(m.payload) + meta
      if (size > w.maxMessageSize) {
        skipped.push(m)
        continue
      }
      const alone = w.single && m.payload.length >= SINGLE_BYTES
      if ((alone || bytes + size > w.packLimit) && batch.length > 0) {
        ready.putBack(m) // still ready: first of the next batch
        break
      }
      bytes += size
      batch.push(m)
      if (alone) break
    }
    for (let i = skipped.length - 1; i >= 0; i--) ready.putBack(skipped[i] as Message)
    if (batch.length === 0) {
      idle++
      continue
    }
    idle = 0
    sendBatch(h, w, batch)
  }
}

function sendBatch(h: DispatchHost, w: WorkerPeer, batch: Message[]): void {
  const now = performance.now()
  const ppx = w.protocol === "ppx"
  const { ackTimeout } = h.settings
  // A worker that reports starts may hold a task behind a busy handler: its deadline waits.
  const deadline = ackTimeout > 0 && !w.starts ? now + ackTimeout : undefined
  const bodies: Buffer[] = []
  // PPX/2: each task's queue and headers, in a frame of their own when any task has some.
  const metas = w.version >= 2 ? metaRecords(h, batch) : undefined
  for (const m of batch) {
    m.attempt++
    if (m.attempt > 1) {
      h.counters.redelivered++
      h.queues.state(m.queue).redelivered++
    }
    m.state = "inflight"
    m.worker = w
    m.sentAt = now
    m.deadline = deadline
    w.inflight.set(m.id, m)
    if (ppx) bodies.push(m.payload)
    else
      h.write([
        w.routingId,
        encodeEnvelope(m.id, m.attempt),
        FRAME_EMPTY,
        joinBody(m.payload), // a PPP request is exactly three frames
      ])
  }
  const only = batch.length === 1 ? batch[0] : undefined
  if (ppx && w.single && only && only.payload.length >= SINGLE_BYTES) {
    // TASK: the body frame is the payload itself, which ZeroMQ sends without a copy (a split
    // body as its two parts, see lib/body.ts).
    const envelope = encodeEnvelope(only.id, only.attempt)
    const parts = bodyParts(only.payload)
    if (metas !== undefined)
      h.write([w.routingId, FRAME_TASKM, envelope, metas[0] as Buffer, ...parts])
    else h.write([w.routingId, FRAME_TASK, envelope, ...parts])
  } else if (ppx) {
    const frames = [w.routingId, FRAME_TASKS, packTaskEnvelopes(batch), packBodies(bodies)]
    if (metas !== undefined) frames.push(packMetas(metas))
    h.write(frames)
  }
  w.liveness.sent()
}

/**
 * What goes with a task to a PPX/2 worker: nothing for the default queue without headers; the
 * queue's record (encoded once per queue) without headers; else encoded once per message.
 */
/** The meta records of a batch, or undefined when none of its tasks has one (the usual case). */
function metaRecords(h: DispatchHost, batch: Message[]): Buffer[] | undefined {
  let i = 0
  while (i < batch.length) {
    const m = batch[i] as Message
    if (m.headers !== undefined || m.queue !== DEFAULT_QUEUE) break
    i++
  }
  if (i === batch.length) return undefined
  return batch.map((m) => taskMeta(h, m))
}

function taskMeta(h: DispatchHost, m: Message): Buffer {
  if (m.headers === undefined)
    return m.queue === DEFAULT_QUEUE ? FRAME_EMPTY : h.queues.state(m.queue).meta
  // A message's headers are its own frozen copy: its record is encoded once, for every attempt.
  let meta = metaOfHeaders.get(m.headers)
  if (meta === undefined) {
    meta = encodeTaskMeta(m.queue, m.headers)
    metaOfHeaders.set(m.headers, meta)
  }
  return meta
}

/** The meta record of a message with headers, by its headers. */
const metaOfHeaders = new WeakMap<object, Buffer>()
