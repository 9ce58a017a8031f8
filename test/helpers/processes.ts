import { fork, type ChildProcess } from "node:child_process"
import { once } from "node:events"
import { onTestFinished } from "vitest"

export interface Child {
  process: ChildProcess
  /** Every IPC message received so far. */
  messages: Record<string, unknown>[]
  /** Resolves with the first IPC message (already received or future) that matches. */
  waitFor(
    match: (m: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>
  kill(signal?: NodeJS.Signals): Promise<void>
}

/** Forks a TypeScript fixture (through tsx); the test ends it when it finishes. */
export function forkFixture(file: string, args: string[]): Child {
  const child = fork(new URL(`../fixtures/${file}`, import.meta.url), args, {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  })
  const messages: Record<string, unknown>[] = []
  const waiters: {
    match: (m: Record<string, unknown>) => boolean
    resolve: (m: Record<string, unknown>) => void
  }[] = []
  child.on("message", (m: Record<string, unknown>) => {
    messages.push(m)
    for (const w of [...waiters]) {
      if (w.match(m)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(m)
      }
    }
  })
  const exited = once(child, "exit")
  const kill = async (signal: NodeJS.Signals = "SIGKILL"): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      if (signal === "SIGKILL") child.kill("SIGCONT")
      child.kill(signal)
      await exited
    }
  }
  onTestFinished(() => kill("SIGKILL"))
  return {
    process: child,
    messages,
    waitFor(match, timeoutMs = 8000) {
      const found = messages.find(match)
      if (found) return Promise.resolve(found)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `fixture ${file}: no matching message within ${timeoutMs} ms; got ${JSON.stringify(messages.slice(-5))}`,
              ),
            ),
          timeoutMs,
        )
        waiters.push({
          match,
          resolve: (m) => {
            clearTimeout(timer)
            resolve(m)
          },
        })
        void exited.then(() => {
          clearTimeout(timer)
          reject(
            new Error(
              `fixture ${file} exited before a matching message; got ${JSON.stringify(messages.slice(-5))}`,
            ),
          )
        })
      })
    },
    kill,
  }
}
