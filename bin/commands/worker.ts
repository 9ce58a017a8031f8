/** `pirate worker`: a Paranoid Pirate worker with a built-in or a module's handler. */
import { existsSync } from "node:fs"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Worker, type JobHandler } from "../../patterns/index.js"
import { serveMetrics, type MetricsServer } from "../../lib/index.js"
import { UsageError, errorMessage, intOption, parse, type Command } from "../cli.js"
import { optionError, runUntilSignal, serveOnMetricsPort } from "./long-running.js"
import { CURVE_CLIENT_HELP, CURVE_OPTIONS, curveClient } from "./keys.js"

const HELP = `Usage: pirate worker --connect EP [--connect EP2 …] (--echo | --module FILE) [options]

Runs a Paranoid Pirate worker: connects to a sender or a queue (pirate queue's backend),
takes messages, runs the handler on each and answers (acks) with its result; a handler
that throws makes the sender retry the message later. Heartbeats both ways; a silent
sender is left and reconnected with backoff. With several --connect endpoints the worker
serves all of them.

Handler (one of):
      --echo                 answer each message with its payload
      --module FILE          import FILE (a path relative to the current directory; .js,
                             .mjs, or .ts in a checkout of zeromq-pirate) and use its
                             default export as the handler:
                               export default async function (payload, ctx) { return reply }
                             ctx has id, attempt (1, 2, … on redeliveries), endpoint,
                             queue, headers, signal (aborted when the worker must
                             stop) and extend()

On start it prints one line on stdout, then one line each time a sender answers:
  worker connect=tcp://127.0.0.1:5556 concurrency=1
  worker ready endpoint=tcp://127.0.0.1:5556 protocol=ppx
On SIGINT or SIGTERM it stops taking messages, lets running ones finish and answers them
(for up to --close-timeout), then exits.

Options:
  -c, --connect EP             sender or queue endpoint, e.g. tcp://127.0.0.1:5556 (required;
                               repeat it to serve several)
  -q, --queue NAME             take the messages of the named queue NAME (repeat it to take
                               several, round robin across them); default: the "default"
                               queue only (needs --protocol ppx, the default)
  -n, --concurrency N          handlers running at once (default 1)
      --prefetch N             messages each sender may hand out ahead (default: concurrency)
      --raw                    payloads are bytes (a Buffer for the module's handler; the
                               reply may be a Buffer or a string), for senders and clients
                               that do not speak msgpack. Default: msgpack values
      --protocol P             ppx (default: the extension, falling back to plain PPP) or
                               ppp (plain rfc 6/PPP only)
      --heartbeat-interval MS  heartbeat period (default 1000)
      --liveness N             heartbeats missed before a sender is presumed dead (default 3)
      --close-timeout MS       how long running handlers may take to finish on exit
                               (default 10000)
      --dedupe DIR             remember completed messages in DIR (LevelDB) and answer a
                               redelivery of one from there without running the handler
${CURVE_CLIENT_HELP}
      --metrics-port N         serve Prometheus metrics on http://127.0.0.1:N/metrics
  -v, --verbose                log lost senders and failed jobs on stderr
  -h, --help                   show this help

Exit status: 0 after SIGINT or SIGTERM; 1 when the worker fails (e.g. the module throws
while loading); 2 for a usage error (e.g. FILE does not exist or has no default export
function).

Examples:
  pirate worker --connect tcp://127.0.0.1:5556 --echo
  pirate worker -c tcp://10.0.0.1:5556 -c tcp://10.0.0.2:5556 --module ./resize.js -n 8
  pirate worker -c tcp://127.0.0.1:5556 --queue resize --queue thumbnail --module ./images.js
`

const OPTIONS = {
  connect: { type: "string", short: "c", multiple: true },
  queue: { type: "string", short: "q", multiple: true },
  echo: { type: "boolean" },
  module: { type: "string" },
  concurrency: { type: "string", short: "n" },
  prefetch: { type: "string" },
  raw: { type: "boolean" },
  protocol: { type: "string" },
  "heartbeat-interval": { type: "string" },
  liveness: { type: "string" },
  "close-timeout": { type: "string" },
  verbose: { type: "boolean", short: "v" },
  dedupe: { type: "string" },
  "metrics-port": { type: "string" },
  ...CURVE_OPTIONS,
} as const

export const command: Command = {
  summary: "run a Paranoid Pirate worker (echo, or a handler module)",
  help: HELP,
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parse(argv, OPTIONS, false)
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
    const connect = values.connect ?? []
    if (connect.length === 0) throw new UsageError("--connect EP is required")
    if (values.echo === true && values.module !== undefined) {
      throw new UsageError("give either --echo or --module FILE, not both")
    }
    if (values.echo !== true && values.module === undefined) {
      throw new UsageError("a handler is required: --echo or --module FILE")
    }
    const protocol = values.protocol
    if (protocol !== undefined && protocol !== "ppx" && protocol !== "ppp") {
      throw new UsageError(`--protocol must be ppx or ppp, got "${protocol}"`)
    }
    const concurrency = intOption("concurrency", values.concurrency)
    const prefetch = intOption("prefetch", values.prefetch)
    const heartbeatInterval = intOption("heartbeat-interval", values["heartbeat-interval"])
    const liveness = intOption("liveness", values.liveness)
    const closeTimeout = intOption("close-timeout", values["close-timeout"])
    const metricsPort = intOption("metrics-port", values["metrics-port"])
    const curve = curveClient(values)

    const handler = values.module === undefined ? echo : await loadHandler(values.module)

    let worker: Worker
    try {
      worker = new Worker({
        connect,
        handler,
        codec: values.raw === true ? "raw" : "msgpack",
        ...(protocol === undefined ? {} : { protocol }),
        ...(values.queue === undefined ? {} : { queues: values.queue }),
        ...(concurrency === undefined ? {} : { concurrency }),
        ...(prefetch === undefined ? {} : { prefetch }),
        ...(heartbeatInterval === undefined ? {} : { heartbeatInterval }),
        ...(liveness === undefined ? {} : { liveness }),
        ...(closeTimeout === undefined ? {} : { closeTimeout }),
        ...(values.dedupe === undefined ? {} : { dedupe: values.dedupe }),
        ...(curve === undefined ? {} : { curve }),
      })
    } catch (err) {
      // The library names the option 'queues' (or 'queues[1]'); here it is --queue.
      throw optionError(
        err instanceof TypeError || err instanceof RangeError
          ? Object.assign(err, { message: err.message.replace(/'queues(\[\d+\])?'/g, "'queue'") })
          : err,
      )
    }

    const log = (line: string): void => {
      process.stderr.write(`pirate worker: ${line}\n`)
    }
    worker.on("sender:ready", (e) => {
      process.stdout.write(`worker ready endpoint=${e.endpoint} protocol=${e.protocol}\n`)
    })
    if (values.verbose === true) {
      worker.on("sender:lost", (e) =>
        log(`lost ${e.endpoint} (${e.reason}), reconnecting in ${e.reconnectIn} ms`),
      )
      worker.on("job:failed", (e) =>
        log(`job ${e.id} attempt ${e.attempt} failed: ${e.error.message}`),
      )
    }

    let metrics: MetricsServer | undefined
    return runUntilSignal({
      name: "worker",
      start: async () => {
        // Before open(): a sender may answer (the "ready" line) as soon as the worker connects.
        const queues = values.queue === undefined ? "" : ` queues=${values.queue.join(",")}`
        process.stdout.write(
          `worker connect=${connect.join(",")} concurrency=${concurrency ?? 1}${queues}\n`,
        )
        await worker.open()
        if (metricsPort !== undefined) {
          metrics = await serveOnMetricsPort(metricsPort, () =>
            serveMetrics({ port: metricsPort }, () => worker.metrics()),
          )
          process.stdout.write(`worker metrics=${metrics.url}\n`)
        }
      },
      stop: async () => {
        await metrics?.close()
        await worker.close()
      },
      onFatal: (report) =>
        worker.on("error", (err) => report(`the worker failed: ${errorMessage(err)}`)),
    })
  },
}

/** The `--echo` handler: the reply is the payload. */
const echo: JobHandler = (payload) => payload

/** Imports `file` (relative to the current directory) and returns its default export. */
async function loadHandler(file: string): Promise<JobHandler> {
  const path = resolve(process.cwd(), file)
  if (!existsSync(path)) throw new UsageError(`--module ${file}: no such file (${path})`)
  let module: { default?: unknown }
  try {
    module = (await import(pathToFileURL(path).href)) as { default?: unknown }
  } catch (err) {
    // The first line only: the command's contract is one line on stderr.
    const first = errorMessage(err).split("\n")[0] ?? ""
    throw new Error(`--module ${file} failed to load: ${first}`, { cause: err })
  }
  const handler = module.default
  if (typeof handler !== "function") {
    throw new UsageError(
      `--module ${file} has no default export function (found ${handler === undefined ? "none" : typeof handler}); ` +
        "write: export default async function (payload, ctx) { return reply }",
    )
  }
  return handler as JobHandler
}
