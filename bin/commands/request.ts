/** `pirate request`: one Lazy Pirate request; prints the reply. */
import { LazyPirateClient, RemoteError, RequestTimeoutError } from "../../patterns/index.js"
import { UsageError, intOption, parse, type Command } from "../cli.js"
import { CURVE_CLIENT_HELP, CURVE_OPTIONS, curveClient } from "./keys.js"
import { optionError } from "./long-running.js"

const HELP = `Usage: pirate request --connect EP [--connect EP2 …] [options] PAYLOAD

Sends PAYLOAD to a Lazy Pirate server and prints the reply on stdout. A try with no
reply within --timeout is resent from a fresh socket (to the next --connect endpoint
when there are several), up to --retries tries in all.

Options:
  -c, --connect EP    server endpoint, e.g. tcp://127.0.0.1:5555 (required; repeat
                      it for failover endpoints, tried in order)
  -t, --timeout MS    timeout of each try in milliseconds (default 2500)
  -r, --retries N     tries in all, the first one included (default 3)
      --raw           send PAYLOAD as one plain frame and print the first frame of
                      the reply as text: works with any REP server (e.g. the Guide's
                      lpserver). Without it the request is msgpack-encoded and LPX/1
                      framed (a LazyPirateServer), PAYLOAD is parsed as JSON when it
                      parses (else sent as a string) and the reply is printed as JSON
                      (binary values as text)
${CURVE_CLIENT_HELP}
  -h, --help          show this help

Exit status: 0 with a reply; 1 when no reply came after the last try or the
server's handler failed (one line on stderr); 2 for a usage error.

Examples:
  pirate request --connect tcp://127.0.0.1:5555 '{"op":"add","a":1,"b":2}'
  pirate request -c tcp://10.0.0.1:5555 -c tcp://10.0.0.2:5555 -t 1000 -r 4 ping
  pirate request --raw --connect tcp://localhost:5555 hello
`

const OPTIONS = {
  connect: { type: "string", short: "c", multiple: true },
  timeout: { type: "string", short: "t" },
  retries: { type: "string", short: "r" },
  raw: { type: "boolean" },
  ...CURVE_OPTIONS,
} as const

export const command: Command = {
  summary: "send one request to a Lazy Pirate server and print the reply",
  help: HELP,
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parse(argv, OPTIONS)
    const connect = values.connect ?? []
    if (connect.length === 0) throw new UsageError("--connect EP is required")
    if (positionals.length !== 1) {
      throw new UsageError(
        `expected one PAYLOAD argument, got ${positionals.length}; quote a payload that has spaces`,
      )
    }
    const text = positionals[0] as string
    const timeout = intOption("timeout", values.timeout)
    const retries = intOption("retries", values.retries)
    const raw = values.raw === true
    const curve = curveClient(values)

    let client: LazyPirateClient
    try {
      client = new LazyPirateClient({
        connect,
        codec: raw ? "raw" : "msgpack",
        ...(timeout === undefined ? {} : { timeout }),
        ...(retries === undefined ? {} : { retries }),
        ...(curve === undefined ? {} : { curve }),
      })
    } catch (err) {
      throw optionError(err) // the constructor names the option; say it as the command line does
    }

    const controller = new AbortController()
    const onSigint = () => controller.abort(new Error("interrupted"))
    process.once("SIGINT", onSigint)
    try {
      const reply = await client.request(raw ? text : parsePayload(text), {
        signal: controller.signal,
      })
      process.stdout.write(`${raw ? String(reply) : formatReply(reply)}\n`)
      return 0
    } catch (err) {
      if (err instanceof RequestTimeoutError) {
        process.stderr.write(`pirate request: ${err.message}\n`)
        return 1
      }
      if (err instanceof RemoteError) {
        process.stderr.write(`pirate request: the server's handler failed: ${err.message}\n`)
        return 1
      }
      throw err
    } finally {
      process.removeListener("SIGINT", onSigint)
      await client.close()
    }
  },
}

/** JSON when the text parses as JSON, else the text itself. */
function parsePayload(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** The reply as one line of JSON, with binary values shown as (UTF-8) text. */
function formatReply(reply: unknown): string {
  const json = JSON.stringify(reply, function (this: Record<string, unknown>, key, value: unknown) {
    // JSON.stringify calls Buffer#toJSON before the replacer: look at the original value.
    const original = this[key]
    if (original instanceof Uint8Array) {
      return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString()
    }
    return value
  })
  return json ?? "null"
}
