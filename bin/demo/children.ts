/**
 * The demo's child processes: where their programs are, how node runs them, and what the demo
 * keeps of each.
 */
import type { ChildProcess } from "node:child_process"

/** In a checkout this file is TypeScript run by tsx, and so are the children; built, plain JS. */
const FROM_SOURCE = import.meta.url.endsWith(".ts")

export function programUrl(name: "sender" | "pair-sender" | "worker"): URL {
  return new URL(`./${name}${FROM_SOURCE ? ".ts" : ".js"}`, import.meta.url)
}

export function childExecArgv(): string[] {
  if (!FROM_SOURCE) return []
  // Resolved from here rather than from the working directory, which may be anywhere.
  let tsx = "tsx"
  try {
    tsx = import.meta.resolve("tsx")
  } catch {
    /* fall back to resolving it from the working directory */
  }
  return ["--import", tsx]
}

export interface Proc {
  name: string
  child: ChildProcess
  /** Resolves once the process exited and its IPC channel and pipes are closed. */
  ended: Promise<void>
  /** We killed or closed it: its exit is no failure. */
  expected: boolean
  running: boolean
  /** A worker's session with the sender is up (for a pair: with the active one). */
  connected: boolean
  /** A worker said "closed": every report it made has been received. */
  closed: boolean
  killed: boolean
  /** How it exited: "code 0", "SIGKILL", … */
  exit?: string
  /** Messages this worker reported processed. */
  processed: number
}
