/**
 * W3C trace context (lib/trace.ts) against the OpenTelemetry SDK: an in-memory exporter behind a
 * BasicTracerProvider, with the AsyncLocalStorage context manager, registered globally as an
 * application would.
 */
import {
  context,
  createTraceState,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
} from "@opentelemetry/api"
import { type ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { beforeEach, describe, expect, it } from "vitest"
import { registerSdk } from "../helpers/otel.js"
import { forkFixture } from "../helpers/processes.js"
import {
  ATTEMPT_ATTRIBUTE,
  runInConsumerSpan,
  SENDER_ID_ATTRIBUTE,
  tracing,
  withTraceContext,
} from "../../lib/trace.js"

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

const { exporter, tracer } = registerSdk("trace-test")
beforeEach(() => {
  exporter.reset()
})

/** Runs `fn` with a new span active, ends it, and returns both. */
function inSpan<T>(fn: (span: Span) => T): { span: Span; result: T } {
  const span = tracer.startSpan("producer", { kind: SpanKind.PRODUCER })
  try {
    return { span, result: context.with(trace.setSpan(context.active(), span), () => fn(span)) }
  } finally {
    span.end()
  }
}

function finished(name: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.name === name)
}

function only(name: string): ReadableSpan {
  const spans = finished(name)
  expect(spans).toHaveLength(1)
  return spans[0]!
}

describe("withTraceContext", () => {
  it("loads the api in this process", () => {
    expect(tracing).toBe(true)
  })

  it("adds the active span's traceparent to a copy of the headers", () => {
    const headers = { a: "1" }
    const { span, result } = inSpan(() => withTraceContext(headers))
    const sc = span.spanContext()
    expect(result).not.toBe(headers)
    expect(headers).toEqual({ a: "1" })
    expect(result).toEqual({ a: "1", traceparent: `00-${sc.traceId}-${sc.spanId}-01` })
    expect(result?.["traceparent"]).toMatch(TRACEPARENT)
    expect(result).not.toHaveProperty("tracestate")
  })

  it("makes headers when the caller gave none", () => {
    const { span, result } = inSpan(() => withTraceContext(undefined))
    const sc = span.spanContext()
    expect(result).toEqual({ traceparent: `00-${sc.traceId}-${sc.spanId}-01` })
  })

  it("writes the trace flags of an unsampled span and its trace state", () => {
    const sc = {
      traceId: "4bf92f3577b34ca6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      traceFlags: 0,
      traceState: createTraceState("vendor=abc,other=x y"),
    }
    const result = context.with(trace.setSpanContext(ROOT_CONTEXT, sc), () => withTraceContext({}))
    expect(result).toEqual({
      traceparent: "00-4bf92f3577b34ca6a3ce929d0e0e4736-00f067aa0ba902b7-00",
      tracestate: "vendor=abc,other=x y",
    })
  })

  it("returns the same object when no span is active", () => {
    const headers = { a: "1" }
    expect(withTraceContext(headers)).toBe(headers)
    expect(withTraceContext(undefined)).toBeUndefined()
  })

  it("returns the same object when the active span context is invalid", () => {
    const headers = { a: "1" }
    for (const sc of [
      { traceId: "0".repeat(32), spanId: "00f067aa0ba902b7", traceFlags: 1 },
      { traceId: "4bf92f3577b34ca6a3ce929d0e0e4736", spanId: "0".repeat(16), traceFlags: 1 },
      { traceId: "4BF92F3577B34CA6A3CE929D0E0E4736", spanId: "00f067aa0ba902b7", traceFlags: 1 },
    ]) {
      const ctx = trace.setSpanContext(ROOT_CONTEXT, sc)
      expect(context.with(ctx, () => withTraceContext(headers))).toBe(headers)
    }
  })

  it("keeps the caller's own traceparent, and adds no tracestate to it", () => {
    const headers = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }
    const sc = {
      traceId: "4bf92f3577b34ca6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      traceFlags: 1,
      traceState: createTraceState("vendor=abc"),
    }
    const result = context.with(trace.setSpanContext(ROOT_CONTEXT, sc), () =>
      withTraceContext(headers),
    )
    expect(result).toBe(headers)
    expect(result).toEqual({
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    })
  })
})

describe("runInConsumerSpan", () => {
  it("runs the handler in a CONSUMER span, child of the injected span", async () => {
    const { span: producer, result: headers } = inSpan(() => withTraceContext({ a: "1" }))
    const value = await runInConsumerSpan(
      { queue: "resize", id: "m-1", attempt: 3, headers: headers!, senderId: "s-1" },
      async () => "done",
    )
    expect(value).toBe("done")
    const consumer = only("process resize")
    expect(consumer.kind).toBe(SpanKind.CONSUMER)
    expect(consumer.spanContext().traceId).toBe(producer.spanContext().traceId)
    expect(consumer.parentSpanContext?.spanId).toBe(producer.spanContext().spanId)
    expect(consumer.parentSpanContext?.isRemote).toBe(true)
    expect(consumer.attributes).toEqual({
      "messaging.system": "zeromq-pirate",
      "messaging.operation.type": "process",
      "messaging.operation.name": "process",
      "messaging.operation": "process",
      "messaging.destination.name": "resize",
      "messaging.message.id": "m-1",
      [ATTEMPT_ATTRIBUTE]: 3,
      [SENDER_ID_ATTRIBUTE]: "s-1",
    })
    expect(consumer.status.code).toBe(SpanStatusCode.UNSET)
    expect(consumer.ended).toBe(true)
    expect(consumer.instrumentationScope.name).toBe("zeromq-pirate")
    expect(consumer.instrumentationScope.version).toMatch(/^\d+\.\d+\.\d+/)
  })

  it("gives each attempt its own span under the same trace", async () => {
    const { span: producer, result: headers } = inSpan(() => withTraceContext(undefined))
    for (const attempt of [1, 2]) {
      await runInConsumerSpan({ queue: "q", id: "m", attempt, headers: headers! }, async () => 0)
    }
    const spans = finished("process q")
    expect(spans.map((s) => s.attributes[ATTEMPT_ATTRIBUTE])).toEqual([1, 2])
    expect(new Set(spans.map((s) => s.spanContext().spanId)).size).toBe(2)
    for (const s of spans) {
      expect(s.spanContext().traceId).toBe(producer.spanContext().traceId)
      expect(s.parentSpanContext?.spanId).toBe(producer.spanContext().spanId)
    }
  })

  it("makes spans the handler starts children of the consumer span", async () => {
    const { result: headers } = inSpan(() => withTraceContext(undefined))
    await runInConsumerSpan({ queue: "q", id: "m", attempt: 1, headers: headers! }, async () => {
      await Promise.resolve()
      tracer.startActiveSpan("inner", (inner) => inner.end())
    })
    const consumer = only("process q")
    const inner = only("inner")
    expect(inner.parentSpanContext?.spanId).toBe(consumer.spanContext().spanId)
    expect(inner.spanContext().traceId).toBe(consumer.spanContext().traceId)
  })

  it("sets ERROR, records the exception and rethrows when the handler rejects", async () => {
    const failure = new TypeError("bad payload")
    const run = runInConsumerSpan({ queue: "q", id: "m", attempt: 1, headers: {} }, async () => {
      throw failure
    })
    await expect(run).rejects.toBe(failure)
    const consumer = only("process q")
    expect(consumer.ended).toBe(true)
    expect(consumer.status).toEqual({ code: SpanStatusCode.ERROR, message: "bad payload" })
    expect(consumer.attributes["error.type"]).toBe("TypeError")
    const [event] = consumer.events
    expect(event?.name).toBe("exception")
    expect(event?.attributes).toMatchObject({
      "exception.type": "TypeError",
      "exception.message": "bad payload",
    })
  })

  it("handles a thrown non-Error and a synchronous throw alike", async () => {
    const thrown = Object.create(null) as object
    await expect(
      runInConsumerSpan({ queue: "q", id: "m", attempt: 1, headers: {} }, () => {
        // A handler may throw anything; this one has no prototype, so String() would throw too.
        // eslint-disable-next-line @typescript-eslint/only-throw-error
        throw thrown
      }),
    ).rejects.toBe(thrown)
    const consumer = only("process q")
    expect(consumer.status.code).toBe(SpanStatusCode.ERROR)
    expect(consumer.attributes["error.type"]).toBe("_OTHER")
    expect(consumer.ended).toBe(true)
  })

  it("does not take the ambient span as parent when the message has none", async () => {
    const { span: ambient } = inSpan(() => undefined)
    await context.with(trace.setSpan(ROOT_CONTEXT, ambient), () =>
      runInConsumerSpan({ queue: "q", id: "m", attempt: 1, headers: {} }, async () => 0),
    )
    expect(only("process q").parentSpanContext).toBeUndefined()
  })

  it.each([
    ["version ff", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
    ["version 01", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
    ["all-zero trace id", `00-${"0".repeat(32)}-b7ad6b7169203331-01`],
    ["all-zero span id", `00-0af7651916cd43dd8448eb211c80319c-${"0".repeat(16)}-01`],
    ["upper-case hex", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"],
    ["short trace id", "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01"],
    ["long span id", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333100-01"],
    ["one-digit flags", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"],
    ["a trailing field", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-00"],
    ["surrounding spaces", " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 "],
    ["non-hex", "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01"],
    ["garbage", "not a traceparent"],
    ["empty", ""],
  ])("starts a new root span for a traceparent with %s", async (_, traceparent) => {
    const value = await runInConsumerSpan(
      { queue: "q", id: "m", attempt: 1, headers: { traceparent, tracestate: "vendor=abc" } },
      async () => "ran",
    )
    expect(value).toBe("ran")
    const consumer = only("process q")
    expect(consumer.parentSpanContext).toBeUndefined()
    expect(consumer.spanContext().traceId).not.toBe("0af7651916cd43dd8448eb211c80319c")
    expect(consumer.spanContext().traceState).toBeUndefined()
  })

  it("reads a valid traceparent written by another implementation", async () => {
    // The example of W3C Trace Context §3.2.2.
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await runInConsumerSpan({ queue: "q", id: "m", attempt: 1, headers: { traceparent } }, () =>
      Promise.resolve(),
    )
    const consumer = only("process q")
    expect(consumer.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c")
    expect(consumer.parentSpanContext).toMatchObject({
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      traceFlags: 1,
      isRemote: true,
    })
  })

  it("carries tracestate into the parent span context", async () => {
    const sc = {
      traceId: "4bf92f3577b34ca6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      traceFlags: 1,
      traceState: createTraceState("vendor=abc,other=1"),
    }
    const headers = context.with(trace.setSpanContext(ROOT_CONTEXT, sc), () =>
      withTraceContext(undefined),
    )
    expect(headers?.["tracestate"]).toBe("vendor=abc,other=1")
    await runInConsumerSpan({ queue: "q", id: "m", attempt: 1, headers: headers! }, () =>
      Promise.resolve(),
    )
    const consumer = only("process q")
    expect(consumer.parentSpanContext?.traceState?.serialize()).toBe("vendor=abc,other=1")
    expect(consumer.parentSpanContext?.traceState?.get("vendor")).toBe("abc")
    expect(consumer.spanContext().traceState?.get("other")).toBe("1")
  })
})

describe("without @opentelemetry/api", () => {
  async function runFixture(mode: "absent" | "present"): Promise<Record<string, unknown>> {
    const child = forkFixture("trace-absent.ts", [mode])
    return child.waitFor(() => true, 8_000)
  }

  it("passes headers and handlers through, with an active span in the process", async () => {
    const [absent, present] = await Promise.all([runFixture("absent"), runFixture("present")])
    expect(absent).toEqual({
      tracing: false,
      sameObject: true,
      injected: { a: "1" },
      noHeaders: null,
      value: 42,
      activeInRunIsOuter: true,
      rejectedWithSameError: true,
      spans: ["outer"],
    })
    // The control: the same program, with the package found, traces.
    expect(present).toMatchObject({
      tracing: true,
      sameObject: false,
      injected: { a: "1", traceparent: expect.stringMatching(TRACEPARENT) as unknown },
      activeInRunIsOuter: false,
      rejectedWithSameError: true,
      spans: ["process q", "process q", "outer"],
    })
  })
})
