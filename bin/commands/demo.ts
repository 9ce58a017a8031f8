/**
 * `pirate demo`: the README's main job. Runs a sender (with a LevelDB journal, also the producer)
 * and workers as child processes, SIGKILLs a worker and then the sender mid-stream, restarts
 * them, and proves at the end that every message whose `send()` resolved was processed.
 */
import { UsageError, intOption, parse, type Command } from "../cli.js"
import type { DisplayMode } from "../demo/display.js"
import { PairDemo } from "../demo/pair-script.js"
import { Demo } from "../demo/script.js"

const HELP = `Usage: pirate demo [--pair] [--messages N] [--workers N] [--quiet]

Shows that nothing is lost when processes crash, with nothing to set up. As child
processes it starts a sender (a Sender with a LevelDB journal in a temporary
folder, which also produces a stream of numbered messages) and N workers (a
Worker each, a few ms per message). Mid-stream it kills one worker with SIGKILL
(its messages go to the others) and starts a replacement; later it kills the
sender with SIGKILL and restarts it on the same journal and endpoint: the sender
redelivers every message not acked, the producer goes on after the last message
whose send() had resolved, and the workers reconnect by themselves. At the end it
checks that every message whose send() resolved was processed at least once,
counts the duplicates and explains them, and removes the temporary folder.

With --pair it shows a sender pair (high availability) instead: a primary and a
backup sender, each with its own LevelDB journal, durability "replicated" (a
send() resolves once the message is written on both), and N workers connected
to both. The active sender also produces. Mid-stream it kills the active one
with SIGKILL; the workers vote and the passive takes over (the time it took is
shown), redelivers what its replica of the journal holds, and its producer goes
on after the last send() the killed one confirmed. The killed sender is
restarted: it rejoins as passive and catches up. The same check follows: every
message whose send() resolved, on either sender, was processed at least once.

Options:
      --pair         a sender pair: kill the active sender, the passive takes over
  -n, --messages N   messages to send (default 20000; about 20-30 s)
  -w, --workers N    worker processes (default 3)
  -q, --quiet        print the final summary only
  -h, --help         show this help

Progress is redrawn in place in a terminal and printed as a line per second
otherwise. NODE_DEBUG=pirate traces the library (on stderr).

Exit status: 0 when no message was lost; 1 when one was or the demo failed;
130 when interrupted (Ctrl-C), after ending the child processes.
`

const OPTIONS = {
  messages: { type: "string", short: "n" },
  workers: { type: "string", short: "w" },
  quiet: { type: "boolean", short: "q" },
  pair: { type: "boolean" },
} as const

export const command: Command = {
  summary: "crash demo: a sender and workers are SIGKILLed mid-stream, nothing is lost",
  help: HELP,
  async run(argv: string[]): Promise<number> {
    const { values } = parse(argv, OPTIONS, false)
    const messages = intOption("messages", values.messages, 20_000) as number
    const workers = intOption("workers", values.workers, 3) as number
    if (messages < 1) throw new UsageError(`--messages must be at least 1, got ${messages}`)
    if (workers < 1 || workers > 64)
      throw new UsageError(`--workers must be between 1 and 64, got ${workers}`)
    const mode: DisplayMode =
      values.quiet === true ? "quiet" : process.stdout.isTTY ? "tty" : "plain"
    if (values.pair === true) return new PairDemo({ messages, workers, mode }).run()
    return new Demo({ messages, workers, mode }).run()
  },
}
