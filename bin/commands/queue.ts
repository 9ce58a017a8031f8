/** `pirate queue`: a standalone Paranoid Pirate queue, until SIGINT or SIGTERM. */
import { ParanoidPirateQueue } from "../../patterns/index.js"
import { serveMetrics, type MetricsServer } from "../../lib/index.js"
import { UsageError, errorMessage, intOption, parse, type Command } from "../cli.js"
import { optionError, runUntilSignal, serveOnMetricsPort } from "./long-running.js"
import { CURVE_OPTIONS, CURVE_SERVER_HELP, curveServer } from "./keys.js"

const HELP = `Usage: pirate queue --frontend EP --backend EP [options]

Runs a Paranoid Pirate queue: Lazy Pirate clients (pirate request, LazyPirateClient, any
REQ socket) connect to the frontend, workers (pirate worker, Worker, any rfc 6/PPP worker)
connect to the backend. Each request goes to a ready worker; the request of a worker that
is lost is given to another one; a request whose handler keeps failing is answered with an
error after --max-attempts attempts. Binding to port * picks a free port.

On start it prints one line on stdout with the bound endpoints:
  queue frontend=tcp://127.0.0.1:5555 backend=tcp://127.0.0.1:5556
It runs until SIGINT or SIGTERM, then says goodbye to its workers and closes.

Options:
  -f, --frontend EP            endpoint to bind for clients, e.g. tcp://*:5555 (required)
  -b, --backend EP             endpoint to bind for workers, e.g. tcp://*:5556 (required)
  -j, --journal DIR            keep pending requests in a LevelDB journal in DIR, so that a
                               restarted queue still runs them and answers the clients
                               that are still retrying
      --heartbeat-interval MS  heartbeat period towards plain PPP workers (default 1000;
                               PPX workers announce their own)
      --liveness N             heartbeats a worker may miss before it is lost (default 3)
      --max-attempts N         attempts of a request before it fails (default 5)
      --ack-timeout MS         give a request to another worker when its (live) worker has
                               not answered it within MS; 0 = never (default 0)
${CURVE_SERVER_HELP}
      --metrics-port N         serve Prometheus metrics on http://127.0.0.1:N/metrics
  -v, --verbose                log workers joining and leaving, retries and failures on
                               stderr
  -h, --help                   show this help

Exit status: 0 after SIGINT or SIGTERM; 1 when the queue cannot start (e.g. an endpoint
is in use) or fails; 2 for a usage error.

Examples:
  pirate queue --frontend tcp://*:5555 --backend tcp://*:5556
  pirate queue -f tcp://127.0.0.1:* -b tcp://127.0.0.1:* --journal ./queue-journal
`

const OPTIONS = {
  frontend: { type: "string", short: "f" },
  backend: { type: "string", short: "b" },
  journal: { type: "string", short: "j" },
  "heartbeat-interval": { type: "string" },
  liveness: { type: "string" },
  "max-attempts": { type: "string" },
  "ack-timeout": { type: "string" },
  verbose: { type: "boolean", short: "v" },
  "metrics-port": { type: "string" },
  ...CURVE_OPTIONS,
} as const

export const command: Command = {
  summary: "run a Paranoid Pirate queue between clients and workers",
  help: HELP,
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parse(argv, OPTIONS, false)
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
    if (values.frontend === undefined) throw new UsageError("--frontend EP is required")
    if (values.backend === undefined) throw new UsageError("--backend EP is required")
    const heartbeatInterval = intOption("heartbeat-interval", values["heartbeat-interval"])
    const liveness = intOption("liveness", values.liveness)
    const maxAttempts = intOption("max-attempts", values["max-attempts"])
    const ackTimeout = intOption("ack-timeout", values["ack-timeout"])
    const metricsPort = intOption("metrics-port", values["metrics-port"])
    const curve = curveServer(values)

    let queue: ParanoidPirateQueue
    try {
      queue = new ParanoidPirateQueue({
        frontend: values.frontend,
        backend: values.backend,
        ...(values.journal === undefined ? {} : { journal: values.journal }),
        ...(heartbeatInterval === undefined ? {} : { heartbeatInterval }),
        ...(liveness === undefined ? {} : { liveness }),
        ...(maxAttempts === undefined ? {} : { maxAttempts }),
        ...(ackTimeout === undefined ? {} : { ackTimeout }),
        ...(curve === undefined ? {} : { curve }),
      })
    } catch (err) {
      throw optionError(err)
    }

    const log = (line: string): void => {
      process.stderr.write(`pirate queue: ${line}\n`)
    }
    if (values.verbose === true) {
      queue.on("worker:ready", (e) =>
        log(`worker ${e.workerId} ready (${e.protocol}, credit ${e.credit})`),
      )
      queue.on("worker:lost", (e) =>
        log(`worker ${e.workerId} lost (${e.reason}), ${e.requeued} requeued`),
      )
      queue.on("message:nacked", (e) =>
        log(`request ${e.id} attempt ${e.attempt} failed: ${e.error}`),
      )
      queue.on("message:dead", (e) =>
        log(`request ${e.id} failed after ${e.attempts} attempts: ${e.error}`),
      )
    }

    let metrics: MetricsServer | undefined
    return runUntilSignal({
      name: "queue",
      start: async () => {
        await queue.open()
        process.stdout.write(
          `queue frontend=${queue.frontendEndpoint} backend=${queue.backendEndpoint}\n`,
        )
        if (metricsPort !== undefined) {
          metrics = await serveOnMetricsPort(metricsPort, () =>
            serveMetrics({ port: metricsPort }, () => queue.metrics()),
          )
          process.stdout.write(`queue metrics=${metrics.url}\n`)
        }
      },
      stop: async () => {
        await metrics?.close()
        await queue.close()
      },
      onFatal: (report) =>
        queue.on("error", (err) => report(`the queue failed: ${errorMessage(err)}`)),
    })
  },
}
