/**
 * W3C trace context end to end: a sender in this process (the OpenTelemetry SDK registered here,
 * a span active at `send()`) and workers in child processes (test/fixtures/trace-worker.ts, with
 * or without an SDK of their own, exporting each finished span to this process over IPC). The
 * worker's consumer span is a child of the sending span, also for the attempt redelivered after
 * the first worker was SIGKILLed in the middle of its handler.
 */
import { context, SpanKind, trace, type Span } from "@opentelemetry/api"
import { describe, expect, it } from "vitest"
import { ATTEMPT_ATTRIBUTE, TRACER_NAME } from "../../lib/trace.js"
import { registerSdk } from "../helpers/otel.js"
import { forkFixture, type Child } from "../helpers/processes.js"
import { openSender } from "../helpers/paranoid.js"

const { exporter, tracer } = registerSdk("trace-context-test")

/** What the fixture reports of a finished span. */
interface SpanReport {
  name: string
  kind: number
  traceId: string
  spanId: string
  parentSpanId?: string
  parentIsRemote?: boolean
  parentTraceState?: string
  scope: string
  attributes: Record<string, unknown>
}

/** What the fixture reports of a handler call. */
interface JobReport {
  id: string
  attempt: number
  queue: string
  headers: Record<string, string>
  frozen: boolean
  activeTraceId?: string
  activeSpanId?: string
}

/** Starts a worker fixture and waits until it is connected. */
async function startWorker(
  endpoint: string,
  options: { sdk: boolean; queues?: string[]; holdFirst?: boolean },
): Promise<Child> {
  const child = forkFixture("trace-worker.ts", [endpoint, JSON.stringify(options)])
  await child.waitFor((m) => m["type"] === "ready")
  return child
}

async function jobOf(child: Child, id: string, attempt = 1): Promise<JobReport> {
  const m = await child.waitFor(
    (m) => m["type"] === "job" && m["id"] === id && m["attempt"] === attempt,
  )
  return m as unknown as JobReport
}

async function consumerSpanOf(child: Child, id: string, attempt = 1): Promise<SpanReport> {
  const m = await child.waitFor((m) => {
    const s = m["span"] as SpanReport | undefined
    return (
      m["type"] === "span" &&
      s?.attributes["messaging.message.id"] === id &&
      s.attributes[ATTEMPT_ATTRIBUTE] === attempt
    )
  })
  return m["span"] as SpanReport
}

/** Runs `fn` with a new producer span active; the span ends when `fn` settles. */
async function inSpan<T>(fn: (span: Span) => Promise<T>): Promise<{ span: Span; result: T }> {
  const span = tracer.startSpan("publish", { kind: SpanKind.PRODUCER })
  try {
    const result = await context.with(trace.setSpan(context.active(), span), () => fn(span))
    return { span, result }
  } finally {
    span.end()
  }
}

describe("trace context across the queue", () => {
  it("the handler runs in a CONSUMER span `process default`, child of the span active at send()", async () => {
    const sender = await openSender()
    const worker = await startWorker(sender.endpoint, { sdk: true })
    const { span, result: id } = await inSpan(() =>
      sender.send({ n: 1 }, { headers: { "x-app": "a" } }),
    )
    const sc = span.spanContext()

    const job = await jobOf(worker, id)
    expect(job.headers).toEqual({
      "x-app": "a",
      traceparent: `00-${sc.traceId}-${sc.spanId}-01`,
    })
    expect(job.frozen).toBe(true)

    const consumer = await consumerSpanOf(worker, id)
    expect(consumer).toMatchObject({
      name: "process default",
      kind: SpanKind.CONSUMER,
      traceId: sc.traceId,
      parentSpanId: sc.spanId,
      parentIsRemote: true,
      scope: TRACER_NAME,
    })
    expect(consumer.attributes).toMatchObject({
      "messaging.system": "zeromq-pirate",
      "messaging.operation.type": "process",
      "messaging.destination.name": "default",
      "messaging.message.id": id,
      [ATTEMPT_ATTRIBUTE]: 1,
    })
    // The handler ran with the consumer span active.
    expect(job.activeTraceId).toBe(sc.traceId)
    expect(job.activeSpanId).toBe(consumer.spanId)
    // The producer span is this process's own, in the same trace.
    expect(exporter.getFinishedSpans().map((s) => s.spanContext().spanId)).toContain(sc.spanId)
  })

  it("a message of a named queue: span `process <queue>`, messaging.destination.name", async () => {
    const sender = await openSender()
    const worker = await startWorker(sender.endpoint, { sdk: true, queues: ["resize"] })
    const { span, result: id } = await inSpan(() => sender.send("img", { queue: "resize" }))
    const consumer = await consumerSpanOf(worker, id)
    expect(consumer.name).toBe("process resize")
    expect(consumer.attributes["messaging.destination.name"]).toBe("resize")
    expect(consumer.traceId).toBe(span.spanContext().traceId)
    expect(consumer.parentSpanId).toBe(span.spanContext().spanId)
    expect((await jobOf(worker, id)).queue).toBe("resize")
  })

  it("through a worker SIGKILL: the redelivered attempt's span is in the same trace, same parent, attempt 2", async () => {
    const sender = await openSender({ heartbeatInterval: 100 })
    const first = await startWorker(sender.endpoint, { sdk: true, holdFirst: true })
    const { span, result: id } = await inSpan(() =>
      sender.send({ job: "slow" }, { headers: { tenant: "t1" } }),
    )
    const sc = span.spanContext()
    const held = await jobOf(first, id, 1)
    expect(held.headers["traceparent"]).toBe(`00-${sc.traceId}-${sc.spanId}-01`)

    // Dies in the middle of the handler: its consumer span never ends, nothing is acked.
    await first.kill("SIGKILL")
    expect(first.messages.filter((m) => m["type"] === "span")).toEqual([])
    const second = await startWorker(sender.endpoint, { sdk: true, holdFirst: true })

    const again = await jobOf(second, id, 2)
    expect(again.headers).toEqual({ tenant: "t1", traceparent: `00-${sc.traceId}-${sc.spanId}-01` })
    const consumer = await consumerSpanOf(second, id, 2)
    expect(consumer).toMatchObject({
      name: "process default",
      kind: SpanKind.CONSUMER,
      traceId: sc.traceId,
      parentSpanId: sc.spanId,
      parentIsRemote: true,
    })
    expect(consumer.attributes[ATTEMPT_ATTRIBUTE]).toBe(2)
    expect(consumer.attributes["messaging.message.id"]).toBe(id)
    await sender.drained()
    expect(sender.stats()).toMatchObject({ acked: 1, redelivered: 1, workersLost: 1 })
  })

  it("without an SDK in the worker, headers carrying a traceparent reach the handler unchanged", async () => {
    const sender = await openSender()
    const worker = await startWorker(sender.endpoint, { sdk: false })
    const headers = {
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      tracestate: "vendor=abc",
      other: "1",
    }
    // Outside any span, and inside one: a traceparent of the caller's own is sent as it is.
    const outside = await sender.send("a", { headers })
    const { result: inside } = await inSpan(() => sender.send("b", { headers }))
    for (const id of [outside, inside]) {
      const job = await jobOf(worker, id)
      expect(job.headers).toEqual(headers)
      expect(job.frozen).toBe(true)
    }
    await sender.drained()
    expect(worker.messages.filter((m) => m["type"] === "span")).toEqual([])
  })
})

describe("send() in an active span", () => {
  it("copies the caller's headers: the object passed is not changed", async () => {
    const sender = await openSender()
    const mine = { a: "1" }
    await inSpan(() => sender.send("x", { headers: mine }))
    expect(mine).toEqual({ a: "1" })
  })

  // The trace context is added to a copy of the headers: what the caller passed must still be
  // checked as it is, not as spreading it into an object made it.
  it.each([
    ["a number", 5],
    ["a string", "a=b"],
    ["an array", ["x"]],
    ["null", null],
    ["a Map", new Map([["a", "b"]])],
  ])("still refuses headers that are %s, naming 'headers'", async (_, h) => {
    const sender = await openSender()
    const headers = h as unknown as Record<string, string>
    // Run with the span active, settled inside it.
    const settle = (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        () => undefined,
        (err: unknown) => err,
      )
    const { result: sent } = await inSpan(() => settle(sender.send("x", { headers })))
    const { result: asked } = await inSpan(() =>
      settle(sender.request("x", { headers, timeout: 500 })),
    )
    for (const err of [sent, asked]) {
      expect(err).toBeInstanceOf(TypeError)
      expect(String(err)).toMatch(/'headers'/)
    }
    expect(sender.stats().sent).toBe(0)
  })
})
