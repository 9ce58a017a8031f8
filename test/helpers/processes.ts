import { fork, type ChildProcess } from "node:child_process"
import { once } from "node:events"
import { rmSync } from "node:fs"
import { basename } from "node:path"
import { fileURLToPath } from "node:url"
import { buildSync } from "esbuild"
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

/**
 * Forks a TypeScript fixture (through tsx); the test ends it when it finishes. With `compiled`,
 * the fixture runs as plain JavaScript, bundled once per test process with esbuild (npm packages
 * left as installed), as users run the library: a process that loads tsx carries some 30–50 MB
 * of tooling, which a test of the sender's RSS should not count.
 */
export function forkFixture(
  file: string,
  args: string[],
  options: { compiled?: boolean } = {},
): Child {
  const source = new URL(`../fixtures/${file}`, import.meta.url)
  const child = fork(options.compiled ? compiled(source) : source, args, {
    execArgv: options.compiled ? [] : ["--import", "tsx"],
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

/** Bundles went to a folder of this test process's own (inside the repository, so that npm packages resolve). */
const COMPILED = fileURLToPath(new URL(`../../.tmp/compiled-${process.pid}/`, import.meta.url))
const bundles = new Map<string, string>()

function compiled(source: URL): string {
  const done = bundles.get(source.href)
  if (done !== undefined) return done
  if (bundles.size === 0)
    process.once("exit", () => rmSync(COMPILED, { recursive: true, force: true }))
  const outfile = COMPILED + basename(fileURLToPath(source)).replace(/\.ts$/, ".mjs")
  buildSync({
    entryPoints: [fileURLToPath(source)],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "error",
  })
  bundles.set(source.href, outfile)
  return outfile
}
