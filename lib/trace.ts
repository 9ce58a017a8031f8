/**
 * W3C trace context across the queue (docs/tracing.md): the sender writes the active span into a
 * message's `traceparent`/`tracestate` headers, and the worker runs each handler call in a CONSUMER
 * span whose parent is that remote span (the OpenTelemetry messaging semantic conventions).
 *
 * `@opentelemetry/api` is an optional peer dependency. It is loaded once, synchronously, when this
 * module loads (no top-level `await`, so CommonJS users can still `require()` the package); when it
 * is not installed both functions pass their input through and nothing else changes.
 *
 * The headers are written and read here rather than through `propagation.inject()`: the global
 * propagator is whatever the application registered (often none), and what crosses the queue must
 * not depend on it. `@opentelemetry/core` (which has a W3C propagator) is not a dependency either.
 */
import { createRequire } from "node:module"
import type * as OtelApi from "@opentelemetry/api"
import { debug } from "./debug.js"

type Api = typeof OtelApi

const require = createRequire(import.meta.url)

function load(): Api | undefined {
  try {
    return require("@opentelemetry/api") as Api
  } catch (err) {
    // The message's first line; the rest is node's require stack.
    debug("tracing off: %s", err instanceof Error ? err.message.split("\n", 1)[0] : err)
    return undefined
  }
}

const api = load()

/** True when `@opentelemetry/api` was loaded: trace context is injected and consumer spans are made. */
export const tracing: boolean = api !== undefined

/** The tracer's name, also the `messaging.system` attribute. */
export const TRACER_NAME = "zeromq-pirate"

function packageVersion(): string | undefined {
  try {
    // lib/trace.ts in a checkout, dist/lib/trace.js once built: package.json is one or two up.
    const manifest = import.meta.url.endsWith(".ts") ? "../package.json" : "../../package.json"
    const pkg = require(manifest) as { name?: unknown; version?: unknown }
    return pkg.name === TRACER_NAME && typeof pkg.version === "string" ? pkg.version : undefined
  } catch {
    return undefined
  }
}

const version = api === undefined ? undefined : packageVersion()

/** Consumer span attribute holding the delivery attempt (1 for the first delivery). */
export const ATTEMPT_ATTRIBUTE = "messaging.zeromq_pirate.attempt"
/** Consumer span attribute holding the sender's id, when the worker knows it. */
export const SENDER_ID_ATTRIBUTE = "messaging.zeromq_pirate.sender_id"

// version "00" - 32 hex trace id - 16 hex span id - 2 hex flags, lower case only (W3C Trace
// Context §3.2). Version 00 has exactly this length: no trailing fields.
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const TRACE_ID = /^[0-9a-f]{32}$/
const SPAN_ID = /^[0-9a-f]{16}$/
const ZERO_TRACE_ID = "0".repeat(32)
const ZERO_SPAN_ID = "0".repeat(16)

/**
 * The headers to send: the caller's plus `traceparent` (and `tracestate` when the span has one)
 * of the span active in the current context.
 *
 * @param headers - the caller's headers; never modified
 * @returns `headers` itself (no copy) when `@opentelemetry/api` is absent, no valid span is
 *   active, or the caller set its own `traceparent` (kept as set, with no `tracestate` added);
 *   otherwise a new object
 */
export function withTraceContext(
  headers: Readonly<Record<string, string>> | undefined,
): Readonly<Record<string, string>> | undefined {
  if (api === undefined) return headers
  const span = api.trace.getSpan(api.context.active())
  if (span === undefined) return headers
  if (headers !== undefined && Object.hasOwn(headers, "traceparent")) return headers
  const sc = span.spanContext()
  // Written by hand (see the module comment), so checked by hand: what leaves must parse.
  if (
    !TRACE_ID.test(sc.traceId) ||
    !SPAN_ID.test(sc.spanId) ||
    sc.traceId === ZERO_TRACE_ID ||
    sc.spanId === ZERO_SPAN_ID
  ) {
    return headers
  }
  const flags = (sc.traceFlags & 0xff).toString(16).padStart(2, "0")
  const out: Record<string, string> = {
    ...headers,
    traceparent: `00-${sc.traceId}-${sc.spanId}-${flags}`,
  }
  const state = sc.traceState?.serialize()
  if (state !== undefined && state !== "") out["tracestate"] = state
  return out
}

/**
 * The remote span context in `headers`, or undefined when `traceparent` is missing or invalid.
 * Invalid values are ignored: a message's headers come from a peer and never fail its handler.
 */
function extract(
  api: Api,
  headers: Readonly<Record<string, string>>,
): OtelApi.SpanContext | undefined {
  try {
    const parent = Object.hasOwn(headers, "traceparent") ? headers["traceparent"] : undefined
    if (typeof parent !== "string") return undefined
    const m = TRACEPARENT.exec(parent)
    if (m === null) return undefined
    const [, traceId, spanId, flags] = m as unknown as [string, string, string, string]
    if (traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return undefined
    const sc: OtelApi.SpanContext = {
      traceId,
      spanId,
      traceFlags: Number.parseInt(flags, 16),
      isRemote: true,
    }
    const state = Object.hasOwn(headers, "tracestate") ? headers["tracestate"] : undefined
    if (typeof state === "string" && state !== "") sc.traceState = api.createTraceState(state)
    return sc
  } catch (err) {
    debug("trace context ignored: %s", (err as Error).message)
    return undefined
  }
}

/**
 * True when a handler call is worth a consumer span: `@opentelemetry/api` is loaded, and the
 * message carries a trace context or an SDK registered a tracer provider. Without either every
 * span would be a no-op, and the handler is called as it is (no promise, no span objects).
 */
export function wantsConsumerSpan(headers: Readonly<Record<string, string>>): boolean {
  if (api === undefined) return false
  if (Object.hasOwn(headers, "traceparent")) return true
  const provider = api.trace.getTracerProvider() as OtelApi.TracerProvider & {
    getDelegate?: () => OtelApi.TracerProvider
  }
  const delegate = typeof provider.getDelegate === "function" ? provider.getDelegate() : provider
  if (delegate !== lastProvider) {
    lastProvider = delegate
    lastVerdict = delegate.constructor.name !== "NoopTracerProvider"
  }
  return lastVerdict
}

/** The tracer provider `wantsConsumerSpan()` looked at last, and what it found. */
let lastProvider: unknown
let lastVerdict = false

/** What the worker knows about one delivery, for its consumer span. */
export interface ConsumerSpanInfo {
  /** The queue the message was taken from. */
  queue: string
  /** The message id. */
  id: string
  /** The delivery attempt, 1 for the first. */
  attempt: number
  /** The message's headers, where `traceparent`/`tracestate` are read. */
  headers: Readonly<Record<string, string>>
  /** The sender's id, when known. */
  senderId?: string | undefined
}

/**
 * Runs one handler call in a CONSUMER span named `process <queue>`, child of the span that sent
 * the message (its `traceparent` header) or a new root when there is none or it is invalid.
 * Spans the handler starts are children of it. A rejection sets the span's status to ERROR,
 * records the exception and is rethrown; the span ends in every case.
 *
 * @param info - the delivery: queue, message id, attempt, headers, sender id
 * @param run - the handler call
 * @returns what `run` returns; without `@opentelemetry/api`, `run()` itself
 */
export function runInConsumerSpan<T>(info: ConsumerSpanInfo, run: () => Promise<T>): Promise<T> {
  if (api === undefined) return run()
  return consume(api, info, run)
}

async function consume<T>(api: Api, info: ConsumerSpanInfo, run: () => Promise<T>): Promise<T> {
  const remote = extract(api, info.headers)
  // No ambient parent: the context the worker's loop happens to run in is not the message's.
  const parent =
    remote === undefined ? api.ROOT_CONTEXT : api.trace.setSpanContext(api.ROOT_CONTEXT, remote)
  const attributes: OtelApi.Attributes = {
    "messaging.system": TRACER_NAME,
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
    "messaging.operation": "process",
    "messaging.destination.name": info.queue,
    "messaging.message.id": info.id,
    [ATTEMPT_ATTRIBUTE]: info.attempt,
  }
  if (info.senderId !== undefined) attributes[SENDER_ID_ATTRIBUTE] = info.senderId
  const span = api.trace
    .getTracer(TRACER_NAME, version)
    .startSpan(`process ${info.queue}`, { kind: api.SpanKind.CONSUMER, attributes }, parent)
  try {
    return await api.context.with(api.trace.setSpan(parent, span), run)
  } catch (err) {
    if (err instanceof Error) {
      span.recordException(err)
      span.setAttribute("error.type", err.name)
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: err.message })
    } else {
      const message = describeThrown(err)
      span.recordException(message)
      span.setAttribute("error.type", "_OTHER")
      span.setStatus({ code: api.SpanStatusCode.ERROR, message })
    }
    throw err
  } finally {
    span.end()
  }
}

/** A thrown non-Error as text; `String()` itself throws on objects without a prototype. */
function describeThrown(value: unknown): string {
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}
