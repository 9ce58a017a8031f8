/** The scheduling options of `send()`: checked, and turned into the times the core uses. */
import { DEFAULT_QUEUE, checkHeaders, checkQueueName } from "../../lib/headers.js"
import { describe } from "../../lib/validate.js"
import { DEFAULT_PRIORITY, type Schedule } from "./core/message.js"

/** The most bytes a `key` may have (it is stored with every message that has one). */
export const MAX_KEY_BYTES = 1024
/** The most bytes a send `id` may have (it is stored with its message, and as a record of its own). */
export const MAX_ID_BYTES = 256

/** What `send()` takes to schedule a message; see `SendOptions`. */
export interface ScheduleOptions {
  delay?: number | undefined
  notBefore?: number | undefined
  ttl?: number | undefined
  expiresAt?: number | undefined
  priority?: number | undefined
  key?: string | undefined
  id?: string | undefined
  queue?: string | undefined
  headers?: Readonly<Record<string, string>> | undefined
}

/**
 * The schedule of a send, or undefined when it sets none of the options (the common case, which
 * costs nine property reads).
 * @throws TypeError or RangeError naming the option
 */
export function resolveSchedule(o: ScheduleOptions): Schedule | undefined {
  const { delay, notBefore, ttl, expiresAt, priority, key, id, queue, headers } = o
  if (
    id === undefined &&
    queue === undefined &&
    headers === undefined &&
    delay === undefined &&
    notBefore === undefined &&
    ttl === undefined &&
    expiresAt === undefined &&
    priority === undefined &&
    key === undefined
  )
    return undefined
  const now = Date.now()
  if (delay !== undefined && notBefore !== undefined)
    throw new TypeError("'delay' and 'notBefore' cannot both be set: give one")
  if (ttl !== undefined && expiresAt !== undefined)
    throw new TypeError("'ttl' and 'expiresAt' cannot both be set: give one")
  let due: number | undefined
  if (delay !== undefined) {
    finite("delay", delay)
    if (delay < 0) throw new RangeError(`'delay' must be 0 or more (ms), got ${delay}`)
    due = delay > 0 ? now + delay : undefined
  } else if (notBefore !== undefined) {
    finite("notBefore", notBefore)
    due = notBefore > now ? notBefore : undefined
  }
  let until: number | undefined
  if (ttl !== undefined) {
    finite("ttl", ttl)
    if (ttl <= 0) throw new RangeError(`'ttl' must be more than 0 (ms), got ${ttl}`)
    until = now + ttl
  } else if (expiresAt !== undefined) {
    finite("expiresAt", expiresAt)
    until = expiresAt
  }
  if (priority !== undefined && (!Number.isInteger(priority) || priority < 0 || priority > 9)) {
    const Err = typeof priority === "number" ? RangeError : TypeError
    throw new Err(`'priority' must be an integer from 0 to 9, got ${describe(priority)}`)
  }
  if (key !== undefined) boundedString("key", key, MAX_KEY_BYTES)
  if (id !== undefined) boundedString("id", id, MAX_ID_BYTES)
  return {
    notBefore: due,
    expiresAt: until,
    priority: priority ?? DEFAULT_PRIORITY,
    key,
    dedupeId: id,
    queue: queue === undefined ? DEFAULT_QUEUE : checkQueueName(queue),
    headers: headers === undefined ? undefined : checkHeaders(headers),
  }
}

function finite(name: string, value: unknown): asserts value is number {
  if (typeof value !== "number" || !Number.isFinite(value))
    throw new TypeError(`'${name}' must be a finite number (ms), got ${describe(value)}`)
}

/** A non-empty string of at most `max` utf-8 bytes (TypeError/RangeError naming it). */
function boundedString(name: string, value: unknown, max: number): void {
  if (typeof value !== "string" || value === "")
    throw new TypeError(`'${name}' must be a non-empty string, got ${describe(value)}`)
  const bytes = Buffer.byteLength(value)
  if (bytes > max) throw new RangeError(`'${name}' must be at most ${max} bytes, got ${bytes}`)
}
