/**
 * The OpenTelemetry SDK registered for a test file: an in-memory exporter behind a simple span
 * processor, and the async-hooks context manager; unregistered after the file's tests.
 */
import { context, trace, type Tracer } from "@opentelemetry/api"
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks"
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base"
import { afterAll, beforeAll, expect } from "vitest"

/** Registers the SDK for the calling test file; `tracer` starts the test's own spans. */
export function registerSdk(tracerName: string): {
  exporter: InMemorySpanExporter
  tracer: Tracer
} {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  beforeAll(() => {
    expect(trace.setGlobalTracerProvider(provider)).toBe(true)
    expect(context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())).toBe(
      true,
    )
  })
  afterAll(async () => {
    trace.disable()
    context.disable()
    await provider.shutdown()
  })
  return { exporter, tracer: trace.getTracer(tracerName) }
}
