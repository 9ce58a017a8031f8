/** The `pirate` command line: dispatches to bin/commands/*.ts. */
import { UsageError, cliOptionNames, errorMessage, isAddressInUse, type Command } from "./cli.js"

const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  request: () => import("./commands/request.js"),
  queue: () => import("./commands/queue.js"),
  worker: () => import("./commands/worker.js"),
  journal: () => import("./commands/journal.js"),
  keygen: () => import("./commands/keygen.js"),
  demo: () => import("./commands/demo.js"),
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(await usage())
    return name === undefined ? 1 : 0
  }
  if (name === "--version" || name === "-v") {
    const { createRequire } = await import("node:module")
    // bin/pirate.ts in a checkout, dist/bin/pirate.js once built: package.json is one or two up.
    const manifest = import.meta.url.endsWith(".ts") ? "../package.json" : "../../package.json"
    const pkg = createRequire(import.meta.url)(manifest) as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return 0
  }
  const load = COMMANDS[name]
  if (!load) throw new UsageError(`unknown command "${name}"; run "pirate --help" for the list`)
  const { command } = await load()
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.help.endsWith("\n") ? command.help : `${command.help}\n`)
    return 0
  }
  return command.run(rest)
}

async function usage(): Promise<string> {
  const lines = ["Usage: pirate <command> [options]", "", "Commands:"]
  for (const [name, load] of Object.entries(COMMANDS)) {
    const { command } = await load()
    lines.push(`  ${name.padEnd(9)} ${command.summary}`)
  }
  lines.push("", 'Run "pirate <command> --help" for the options of a command.', "")
  return lines.join("\n")
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    // An endpoint in use: the message names the option that gave it, as the command line does.
    const message = isAddressInUse(err) ? cliOptionNames(errorMessage(err)) : errorMessage(err)
    process.stderr.write(`pirate: ${message}\n`)
    process.exitCode = err instanceof UsageError ? 2 : 1
  },
)
