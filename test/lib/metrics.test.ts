import fc from "fast-check"
import * as hdr from "hdr-histogram-js"
import { describe, expect, it, onTestFinished } from "vitest"
import { LatencyHistogram, renderPrometheus, serveMetrics } from "../../lib/metrics.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

describe("metrics", () => {
  it("summarises latencies in ms from a histogram", () => {
    const h = new LatencyHistogram()
    expect(h.summary()).toEqual({ count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 })
    for (let i = 1; i <= 1000; i++) h.record(i / 10) // 0.1 … 100 ms
    const s = h.summary()
    expect(s.count).toBe(1000)
    expect(s.p50).toBeCloseTo(50, 0)
    expect(s.p99).toBeCloseTo(99, 0)
    expect(s.max).toBeCloseTo(100, 0)
  })

  it("counts runs of values in one bucket as the histogram would count each value (property)", () => {
    // Latencies from 1 µs to an hour, in runs of near-equal values (the acks of a batch).
    const run = fc.tuple(
      fc.integer({ min: 1, max: 3_600_000_000 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 0, max: 3000 }),
    )
    fc.assert(
      fc.property(fc.array(run, { minLength: 1, maxLength: 30 }), fc.boolean(), (runs, reset) => {
        const h = new LatencyHistogram()
        const plain = hdr.build({
          lowestDiscernibleValue: 1,
          highestTrackableValue: 3_600_000_000,
          numberOfSignificantValueDigits: 3,
        })
        let max = 0
        let sum = 0
        if (reset) {
          h.record(5)
          h.summary()
          h.record(7)
          h.reset()
        }
        for (const [start, count, step] of runs)
          for (let i = 0; i < count; i++) {
            const us = Math.min(3_600_000_000, start + i * step)
            h.record(us / 1000)
            plain.recordValue(us)
            max = Math.max(max, us)
            sum += us
          }
        const s = h.summary()
        expect(s.count).toBe(plain.totalCount)
        expect(s.p50).toBe(plain.getValueAtPercentile(50) / 1000)
        expect(s.p90).toBe(plain.getValueAtPercentile(90) / 1000)
        expect(s.p99).toBe(plain.getValueAtPercentile(99) / 1000)
        expect(s.max).toBe(max / 1000)
        expect(s.mean).toBeCloseTo(sum / plain.totalCount / 1000, 9)
      }),
    )
  })

  it("renders the Prometheus text format with escaped labels", () => {
    const h = new LatencyHistogram()
    h.record(2)
    const text = renderPrometheus(
      [
        { name: "x_total", help: "An x.", type: "counter", value: 3 },
        { name: "lat_seconds", help: "A latency.", type: "summary", value: h.summary() },
      ],
      { role: 'a"b' },
    )
    expect(text).toContain('# TYPE x_total counter\nx_total{role="a\\"b"} 3\n')
    expect(text).toMatch(/lat_seconds\{role="a\\"b",quantile="0.5"\} 0.002/)
    expect(text).toContain('lat_seconds_count{role="a\\"b"} 1')
  })

  it("serves a sender's and a worker's metrics over HTTP for scraping", async () => {
    const sender = await openSender()
    const worker = await openWorker(sender.endpoint, { handler: (p) => p })
    await sender.request(1)
    const server = await serveMetrics(
      { port: 0 },
      () => sender.metrics({ role: "sender" }) + worker.metrics({ role: "worker" }),
    )
    onTestFinished(() => server.close())
    const res = await fetch(server.url)
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toContain("text/plain")
    const body = await res.text()
    expect(body).toContain('pirate_sender_acked_total{role="sender"} 1')
    expect(body).toContain('pirate_sender_workers{role="sender"} 1')
    expect(body).toContain('pirate_worker_acked_total{role="worker"} 1')
    expect(body).toMatch(/pirate_sender_ack_latency_seconds_count\{role="sender"\} 1/)
    expect((await fetch(server.url.replace("/metrics", "/other"))).status).toBe(404)
    expect(sender.stats().latency.count).toBe(1)
  })
})
