/**
 * Child processes of the tests, each killed (SIGKILL) when the test that started it finishes:
 * TypeScript fixtures forked with an IPC channel ({@link forkFixture}), and programs that talk on
 * stdout, one line per event ({@link spawnLines}): the `pirate` CLI and the Python PPP peers of the
 * interop tests ({@link spawnPython}).
 */
import { fork, spawn, type ChildProcess } from "node:child_process"
import { once } from "node:events"
import { rmSync } from "node:fs"
import { basename } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { buildSync } from "esbuild"
import { onTestFinished } from "vitest"
import { PYTHON } from "./prereq.js"

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

export interface Spawned {
  process: ChildProcess
  /** Every stdout line so far. */
  lines: string[]
  /** Every stdout line so far that parsed as a JSON object. */
  events: Record<string, unknown>[]
  /** Everything written to stderr so far. */
  stderr(): string
  /** Resolves with the first line (already printed or future) that matches. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>
  /** Resolves with the first JSON event (already printed or future) that matches. */
  waitFor(
    match: (event: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>
  /** Resolves with the exit code (or the signal's name) once the process has ended and its output is read. */
  exited: Promise<number | string>
  /** Sends `signal` (SIGKILL by default) unless it has exited, and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>
}

/**
 * Spawns `command args`, collects its stdout lines and stderr, and kills it (SIGKILL) when the
 * test finishes. stdin is a pipe that stays open: the Python fixtures exit when it closes, so
 * they never outlive the test runner either.
 */
export function spawnLines(
  command: string,
  args: string[],
  options: { cwd?: string; name?: string } = {},
): Spawned {
  const name = options.name ?? [command, ...args].join(" ")
  const child = spawn(command, args, {
    stdio: ["pipe", "pipe", "pipe"],
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  })
  const lines: string[] = []
  const events: Record<string, unknown>[] = []
  let stderr = ""
  const waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = []
  child.stderr?.setEncoding("utf8")
  child.stderr?.on("data", (chunk: string) => (stderr += chunk))
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    lines.push(line)
    const event = parseEvent(line)
    if (event) events.push(event)
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      }
    }
  })
  // "close", not "exit": stdout may still hold lines when the process exits.
  const exited = new Promise<number | string>((resolve) => {
    child.on("close", (code, signal) => resolve(code ?? signal ?? "unknown"))
  })
  const kill = async (signal: NodeJS.Signals = "SIGKILL"): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    await exited
  }
  onTestFinished(() => kill("SIGKILL"))
  child.on("error", () => undefined) // spawn failures surface as an exit (code -2 or so)

  const remove = (waiter: (typeof waiters)[number]): boolean => {
    const i = waiters.indexOf(waiter)
    if (i >= 0) waiters.splice(i, 1)
    return i >= 0
  }
  const waitForLine = (match: (line: string) => boolean, timeoutMs = 8000): Promise<string> => {
    const found = lines.find(match)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise<string>((resolve, reject) => {
      const describe = (): string =>
        `last lines: ${JSON.stringify(lines.slice(-5))}; stderr: ${JSON.stringify(stderr.slice(-500))}`
      const timer = setTimeout(() => {
        remove(waiter)
        reject(new Error(`${name}: no matching line within ${timeoutMs} ms; ${describe()}`))
      }, timeoutMs)
      const waiter = {
        match,
        resolve: (line: string) => {
          clearTimeout(timer)
          resolve(line)
        },
      }
      waiters.push(waiter)
      void exited.then(() => {
        if (!remove(waiter)) return
        clearTimeout(timer)
        reject(new Error(`${name} ended before printing a matching line; ${describe()}`))
      })
    })
  }

  return {
    process: child,
    lines,
    events,
    stderr: () => stderr,
    waitForLine,
    async waitFor(match, timeoutMs) {
      const line = await waitForLine((l) => {
        const event = parseEvent(l)
        return event !== undefined && match(event)
      }, timeoutMs)
      return parseEvent(line) as Record<string, unknown>
    },
    exited,
    kill,
  }
}

/** Runs `test/fixtures/<script>` with Debian's python3 (unbuffered); see prereq.ts for the check. */
export function spawnPython(script: string, args: string[] = []): Spawned {
  const path = fileURLToPath(new URL(`../fixtures/${script}`, import.meta.url))
  return spawnLines(PYTHON, ["-u", "-B", path, ...args], { name: script })
}

/** Starts `ppp_queue.py` and reads the endpoints it binds. */
export async function startPythonQueue(
  args: string[] = [],
): Promise<{ queue: Spawned; frontend: string; backend: string }> {
  const queue = spawnPython("ppp_queue.py", args)
  const first = await queue.waitFor((e) => typeof e["frontend"] === "string")
  return { queue, frontend: first["frontend"] as string, backend: first["backend"] as string }
}

/** Starts `lp_echo_server.py` (a plain REP server that echoes) and reads the endpoint it prints. */
export async function startPythonEcho(
  args: string[] = [],
): Promise<{ server: Spawned; endpoint: string }> {
  const server = spawnPython("lp_echo_server.py", args)
  const endpoint = await server.waitForLine((line) => line.startsWith("tcp://"))
  return { server, endpoint: endpoint.trim() }
}

function parseEvent(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined
  try {
    const value: unknown = JSON.parse(line)
    return typeof value === "object" && value !== null
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}
