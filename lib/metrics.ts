import { createServer, type Server } from "node:http"
import * as hdr from "hdr-histogram-js"
import { addressInUseError, errorCode } from "./errors.js"

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  count: number
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
}

/**
 * A latency histogram (HdrHistogram, 3 significant digits, 1 µs to 1 h) that records
 * microseconds and reports milliseconds.
 */
export class LatencyHistogram {
  /** Running sum (µs): the library computes its mean by walking the whole histogram. */
  #sum = 0
  /** The largest value recorded (µs), exactly. */
  #max = 0
  /**
   * A run of values in one bucket of the histogram, `[#from, #to)`, counted once when a value
   * falls elsewhere (or the summary is read): the acks of a batch take nearly the same time, and
   * the library's bucket look-up (a log2 and two powers of 2) costs more than the rest of an ack.
   */
  #run = 0
  #runValue = 0
  #from = 0
  #to = 0
  readonly #h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  })

  /** Records one latency given in milliseconds. */
  record(ms: number): void {
    const us = Math.min(3_600_000_000, Math.max(1, Math.round(ms * 1000)))
    this.#sum += us
    if (us > this.#max) this.#max = us
    if (us >= this.#from && us < this.#to) {
      this.#run++
      return
    }
    this.#flush()
    // The bucket of `us`: 3 significant digits keep 2^11 sub-buckets, so values below 2^11 µs
    // are counted exactly, and above that in ranges of 2^(⌊log2 us⌋ − 10) µs.
    const width = 2 ** Math.max(0, 21 - Math.clz32(us))
    this.#from = Math.floor(us / width) * width
    this.#to = this.#from + width
    this.#runValue = us
    this.#run = 1
  }

  #flush(): void {
    if (this.#run === 0) return
    this.#h.recordValueWithCount(this.#runValue, this.#run)
    this.#run = 0
  }

  summary(): LatencySummary {
    this.#flush()
    const h = this.#h
    const count = h.totalCount
    if (count === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 }
    return {
      count,
      p50: h.getValueAtPercentile(50) / 1000,
      p90: h.getValueAtPercentile(90) / 1000,
      p99: h.getValueAtPercentile(99) / 1000,
      max: this.#max / 1000,
      mean: this.#sum / count / 1000,
    }
  }

  reset(): void {
    this.#sum = 0
    this.#max = 0
    this.#run = 0
    this.#from = 0
    this.#to = 0
    this.#h.reset()
  }
}

/** One metric for the Prometheus text exposition format. */
export interface Metric {
  name: string
  help: string
  type: "counter" | "gauge" | "summary"
  /** A number, or for summaries a latency summary (seconds are exported). */
  value: number | LatencySummary
  /**
   * The labels of this series (e.g. `{ queue: "resize" }`), after the renderer's own. Metrics of
   * one name are one family: its HELP and TYPE are written once, with the help and type of the
   * first, and all its series follow them.
   */
  labels?: Readonly<Record<string, string>> | undefined
}

/**
 * The metrics of one role, named after `prefix` (e.g. `"pirate_sender"`) as Prometheus names
 * them: a counter `<prefix>_<name>_total`, a gauge `<prefix>_<name>`, a latency summary
 * `<prefix>_<name>` (the name ends in its unit, e.g. `ack_latency_seconds`).
 */
export function metricsOf(prefix: string): {
  counter: (name: string, help: string, value: number, labels?: Metric["labels"]) => Metric
  gauge: (name: string, help: string, value: number, labels?: Metric["labels"]) => Metric
  summary: (name: string, help: string, value: LatencySummary, labels?: Metric["labels"]) => Metric
} {
  const make = (
    name: string,
    help: string,
    type: Metric["type"],
    value: number | LatencySummary,
    labels: Metric["labels"],
  ): Metric =>
    labels === undefined ? { name, help, type, value } : { name, help, type, value, labels }
  return {
    counter: (name, help, value, labels) =>
      make(`${prefix}_${name}_total`, help, "counter", value, labels),
    gauge: (name, help, value, labels) => make(`${prefix}_${name}`, help, "gauge", value, labels),
    summary: (name, help, value, labels) =>
      make(`${prefix}_${name}`, help, "summary", value, labels),
  }
}

/** A label value as the text format writes it: backslash, double quote and newline escaped. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")
}

/** `k1="v1",k2="v2"` for `labels`, escaped; empty for none. */
function labelText(labels: Readonly<Record<string, string>> | undefined): string {
  if (labels === undefined) return ""
  return Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(",")
}

/**
 * Renders metrics in the Prometheus text exposition format (version 0.0.4). `labels` go on every
 * series; a metric's own `labels` follow them. Metrics that share a name are written as one
 * family (one HELP and TYPE line, then each series), in the order their names first appear.
 */
export function renderPrometheus(
  metrics: readonly Metric[],
  labels: Record<string, string> = {},
): string {
  const base = labelText(labels)
  const families = new Map<string, Metric[]>()
  for (const m of metrics) {
    const family = families.get(m.name)
    if (family) family.push(m)
    else families.set(m.name, [m])
  }
  const lines: string[] = []
  for (const family of families.values()) {
    const first = family[0] as Metric
    lines.push(`# HELP ${first.name} ${first.help}`, `# TYPE ${first.name} ${first.type}`)
    for (const m of family) {
      const own = labelText(m.labels)
      const withLabels = (extra?: string): string => {
        const all = [base, own, extra].filter((s) => s !== undefined && s !== "").join(",")
        return all === "" ? "" : `{${all}}`
      }
      if (typeof m.value === "number") {
        lines.push(`${m.name}${withLabels()} ${m.value}`)
      } else {
        const s = m.value
        for (const [q, v] of [
          ["0.5", s.p50],
          ["0.9", s.p90],
          ["0.99", s.p99],
        ] as const) {
          lines.push(`${m.name}${withLabels(`quantile="${q}"`)} ${v / 1000}`)
        }
        lines.push(
          `${m.name}_sum${withLabels()} ${(s.mean * s.count) / 1000}`,
          `${m.name}_count${withLabels()} ${s.count}`,
        )
      }
    }
  }
  return lines.join("\n") + "\n"
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** e.g. `http://127.0.0.1:9464/metrics` */
  url: string
  close(): Promise<void>
}

/**
 * Serves `GET /metrics` in the Prometheus text format from `render()`, for scraping.
 * Binds 127.0.0.1 unless `host` says otherwise; `port: 0` picks a free port.
 *
 * @throws PirateError `PIRATE_ADDRESS_IN_USE` (naming `port`) when the port is in use.
 */
export async function serveMetrics(
  options: { port: number; host?: string },
  render: () => string,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/metrics" || req.url?.startsWith("/metrics?"))) {
      let body: string
      try {
        body = render()
      } catch (err) {
        res.writeHead(500, { "content-type": "text/plain" }).end(String(err))
        return
      }
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(body)
      return
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics\n")
  })
  const host = options.host ?? "127.0.0.1"
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        errorCode(err) === "EADDRINUSE"
          ? addressInUseError("port", `http://${host}:${options.port}`, err)
          : err,
      ),
    )
    server.listen(options.port, host, () => resolve())
  })
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : options.port
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
