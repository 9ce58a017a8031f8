/**
 * Prometheus series per named queue: labelled series in lib/metrics.ts, and the `queue="…"`
 * families of a Sender's and a ParanoidPirateQueue's metrics.
 */
import { describe, expect, it, onTestFinished } from "vitest"
import { metricsOf, renderPrometheus, type Metric } from "../../lib/metrics.js"
import { LazyPirateClient, ParanoidPirateQueue } from "../../patterns/index.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { waitFor } from "../helpers/wait.js"

/** The value of the series `name{labels}` in `text` (labels as written), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

/** How many lines of `text` are exactly `line`. */
function count(text: string, line: string): number {
  return text.split("\n").filter((l) => l === line).length
}

describe("labelled metrics", () => {
  it("writes unlabelled metrics as before", () => {
    const { counter, gauge } = metricsOf("p")
    expect(renderPrometheus([counter("x", "An x.", 3), gauge("y", "A y.", 1.5)])).toBe(
      "# HELP p_x_total An x.\n# TYPE p_x_total counter\np_x_total 3\n" +
        "# HELP p_y A y.\n# TYPE p_y gauge\np_y 1.5\n",
    )
    expect(renderPrometheus([gauge("y", "A y.", 2)], { role: "r" })).toBe(
      '# HELP p_y A y.\n# TYPE p_y gauge\np_y{role="r"} 2\n',
    )
  })

  it("writes the series of one name as one family, their labels after the renderer's, escaped", () => {
    const { gauge } = metricsOf("p")
    const metrics: Metric[] = [
      gauge("ready", "Ready.", 1, { queue: "a" }),
      gauge("other", "Other.", 7),
      gauge("ready", "Ready.", 2, { queue: 'we"ird\\name\nx' }),
    ]
    expect(renderPrometheus(metrics, { role: "s" })).toBe(
      "# HELP p_ready Ready.\n# TYPE p_ready gauge\n" +
        'p_ready{role="s",queue="a"} 1\n' +
        'p_ready{role="s",queue="we\\"ird\\\\name\\nx"} 2\n' +
        '# HELP p_other Other.\n# TYPE p_other gauge\np_other{role="s"} 7\n',
    )
  })
})

describe("per-queue metrics", { timeout: 15_000 }, () => {
  it("a sender exports each queue's figures with a queue label", async () => {
    const sender = await openSender({ retryBackoff: { initial: 10, max: 10 } })
    let failOnce = true
    await openWorker(sender.endpoint, {
      queues: ["a"],
      handler: (p) => {
        if (p === "fail" && failOnce) {
          failOnce = false
          throw new Error("once")
        }
        return p
      },
    })
    await Promise.all([
      sender.send("x", { queue: "a" }),
      sender.send("fail", { queue: "a" }),
      sender.send("y", { queue: "b" }),
      sender.send("z", { queue: "b" }),
      sender.send("w", { queue: "b" }),
    ])
    await waitFor(() => expect(sender.stats({ queue: "a" }).acked).toBe(2))
    const text = sender.metrics()

    expect(count(text, "# TYPE pirate_sender_queue_ready gauge")).toBe(1)
    expect(count(text, "# TYPE pirate_sender_queue_sent_total counter")).toBe(1)
    expect(sample(text, 'pirate_sender_queue_sent_total{queue="a"}')).toBe(2)
    expect(sample(text, 'pirate_sender_queue_sent_total{queue="b"}')).toBe(3)
    expect(sample(text, 'pirate_sender_queue_sent_total{queue="default"}')).toBe(0)
    expect(sample(text, 'pirate_sender_queue_acked_total{queue="a"}')).toBe(2)
    expect(sample(text, 'pirate_sender_queue_acked_total{queue="b"}')).toBe(0)
    expect(sample(text, 'pirate_sender_queue_nacked_total{queue="a"}')).toBe(1)
    expect(sample(text, 'pirate_sender_queue_redelivered_total{queue="a"}')).toBe(1)
    expect(sample(text, 'pirate_sender_queue_ready{queue="a"}')).toBe(0)
    expect(sample(text, 'pirate_sender_queue_ready{queue="b"}')).toBe(3)
    expect(sample(text, 'pirate_sender_queue_in_flight{queue="b"}')).toBe(0)
    expect(sample(text, 'pirate_sender_queue_workers{queue="a"}')).toBe(1)
    expect(sample(text, 'pirate_sender_queue_workers{queue="b"}')).toBe(0)
    expect(sample(text, 'pirate_sender_queue_backlog{queue="b"}')).toBe(0)
    expect(sample(text, 'pirate_sender_queue_dead_lettered_total{queue="a"}')).toBe(0)
    expect(sample(text, 'pirate_sender_queue_expired_total{queue="b"}')).toBe(0)
    // The unlabelled totals are still there, once.
    expect(sample(text, "pirate_sender_sent_total")).toBe(5)
    expect(count(text, "# TYPE pirate_sender_sent_total counter")).toBe(1)
  })

  it("counts dead letters and expiries per queue, and labels names that need escaping", async () => {
    const sender = await openSender({ maxAttempts: 1 })
    const odd = 'x"y\\z'
    await openWorker(sender.endpoint, {
      queues: [odd],
      handler: () => {
        throw new Error("no")
      },
    })
    await sender.send(1, { queue: odd })
    await sender.send(2, { queue: "c", ttl: 1 })
    await waitFor(() => expect(sender.stats().dead).toBe(2))
    const text = sender.metrics()
    expect(sample(text, 'pirate_sender_queue_dead_lettered_total{queue="x\\"y\\\\z"}')).toBe(1)
    expect(sample(text, 'pirate_sender_queue_dead_lettered_total{queue="c"}')).toBe(1)
    expect(sample(text, 'pirate_sender_queue_expired_total{queue="c"}')).toBe(1)
    expect(sample(text, 'pirate_sender_queue_expired_total{queue="x\\"y\\\\z"}')).toBe(0)
  })

  it("a ParanoidPirateQueue exports them too (pirate_queue_queue_…)", async () => {
    const queue = await ParanoidPirateQueue.open({
      frontend: "tcp://127.0.0.1:*",
      backend: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
    })
    onTestFinished(() => queue.close())
    await openWorker(queue.backendEndpoint, { queues: ["b"], handler: (p) => p })
    const client = new LazyPirateClient({ connect: queue.frontendEndpoint, timeout: 5000 })
    onTestFinished(() => client.close())
    expect(await client.request("hi", { queue: "b" })).toBe("hi")
    const text = queue.metrics()
    expect(sample(text, 'pirate_queue_queue_acked_total{queue="b"}')).toBe(1)
    expect(sample(text, 'pirate_queue_queue_acked_total{queue="default"}')).toBe(0)
    expect(sample(text, 'pirate_queue_queue_workers{queue="b"}')).toBe(1)
  })
})
