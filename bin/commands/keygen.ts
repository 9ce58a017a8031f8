/** `pirate keygen`: a CURVE key pair. */
import { writeFileSync } from "node:fs"
import { UsageError, errorMessage, parse, type Command } from "../cli.js"
import { generateKeyPair } from "./keys.js"

const HELP = `Usage: pirate keygen [--out FILE]

Makes a CURVE key pair (Z85) for --curve-keys. Without --out it prints the pair as JSON on
stdout. With --out it writes the pair to FILE (readable by its owner only) and prints the
public key, which is what peers need (--curve-server-key, --curve-allow).

Options:
  -o, --out FILE   write the key pair to FILE (refuses to overwrite an existing file)
  -h, --help       show this help

Examples:
  pirate keygen --out sender.keys && pirate keygen --out worker.keys
  pirate queue  -f tcp://*:5555 -b tcp://*:5556 --curve-keys sender.keys --curve-allow workers.txt
  pirate worker -c tcp://host:5556 --echo --curve-keys worker.keys --curve-server-key "$(cat sender.pub)"
`

export const command: Command = {
  summary: "make a CURVE key pair for --curve-keys",
  help: HELP,
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parse(
      argv,
      { out: { type: "string", short: "o" } } as const,
      false,
    )
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
    const pair = generateKeyPair()
    const json = `${JSON.stringify(pair, null, 2)}\n`
    if (values.out === undefined) {
      process.stdout.write(json)
      return 0
    }
    try {
      writeFileSync(values.out, json, { mode: 0o600, flag: "wx" })
    } catch (err) {
      throw new Error(`cannot write ${values.out}: ${errorMessage(err)}`, { cause: err })
    }
    process.stdout.write(`${pair.publicKey}\n`)
    return 0
  },
}
