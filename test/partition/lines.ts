/**
 * The control channel of the partition children, which run under `ip netns exec` (no fork IPC
 * there): commands are JSON lines on stdin, reports are JSON lines on stdout.
 */
import { createInterface } from "node:readline"

export type Line = Record<string, unknown> & { type?: string }

/** Writes one report line. */
export function emit(line: Line): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

/** Calls `handle` for each command line; exits when stdin closes (the parent is gone). */
export function onCommand(handle: (command: Line) => void | Promise<void>): void {
  const rl = createInterface({ input: process.stdin })
  rl.on("line", (text) => {
    let command: Line
    try {
      command = JSON.parse(text) as Line
    } catch {
      emit({ type: "error", message: `bad command line: ${text}` })
      return
    }
    Promise.resolve(handle(command)).catch((err: unknown) =>
      emit({ type: "error", message: err instanceof Error ? err.message : String(err) }),
    )
  })
  rl.on("close", () => process.exit(0))
}
