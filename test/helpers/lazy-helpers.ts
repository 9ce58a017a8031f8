/** Helpers of the Lazy Pirate tests: servers, clients and child processes that clean up after the test. */
import { fork, spawn, type ChildProcess } from "node:child_process"
import { once } from "node:events"
import { createServer } from "node:net"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { onTestFinished } from "vitest"
import {
  LazyPirateClient,
  LazyPirateServer,
  type LazyPirateClientOptions,
  type LazyPirateServerOptions,
} from "../../patterns/index.js"

/** Opens a server on a free port of 127.0.0.1, closed when the test finishes. */
export async function startServer(
  options: Omit<LazyPirateServerOptions, "bind"> & { bind?: string },
): Promise<LazyPirateServer> {
  const server = await LazyPirateServer.open({ bind: "tcp://127.0.0.1:*", ...options })
  onTestFinished(() => server.close())
  return server
}

/** A client closed when the test finishes. */
export function openClient(options: LazyPirateClientOptions): LazyPirateClient {
  const client = new LazyPirateClient(options)
  onTestFinished(() => client.close())
  return client
}

/** An endpoint on a port that was free a moment ago: nothing listens there. */
export async function deadEndpoint(): Promise<string> {
  const server = createServer()
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no TCP address")
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `tcp://127.0.0.1:${address.port}`
}

/** Ends a child process (SIGKILL by default) and waits for it to exit. */
export async function killChild(
  child: ChildProcess,
  signal: NodeJS.Signals = "SIGKILL",
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, "exit")
  child.kill(signal)
  await exited
}

/** Forks `test/fixtures/<name>` under tsx; the child is killed when the test finishes. */
export function forkFixture(name: string, args: string[]): ChildProcess {
  const child = fork(fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url)), args, {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  })
  onTestFinished(() => killChild(child))
  return child
}

/** The next IPC message of `child` that satisfies `accept`; rejects if the child exits first. */
export function nextMessage<T extends { type: string }>(
  child: ChildProcess,
  type: T["type"],
  timeout = 8_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      done()
      reject(new Error(`no "${type}" message from the child within ${timeout} ms`))
    }, timeout)
    const onMessage = (msg: unknown) => {
      if (typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === type) {
        done()
        resolve(msg as T)
      }
    }
    const onExit = (code: number | null, signal: string | null) => {
      done()
      reject(new Error(`the child exited (${code ?? signal}) before sending "${type}"`))
    }
    const done = () => {
      clearTimeout(timer)
      child.off("message", onMessage)
      child.off("exit", onExit)
    }
    child.on("message", onMessage)
    child.on("exit", onExit)
  })
}

/**
 * Starts `test/fixtures/<script>` with /usr/bin/python3 and reads the endpoint it prints. The
 * child is killed when the test finishes; its stdin is a pipe so that it also exits if we die.
 */
export async function spawnPython(
  script: string,
  args: string[] = [],
): Promise<{ child: ChildProcess; endpoint: string }> {
  const path = fileURLToPath(new URL(`../fixtures/${script}`, import.meta.url))
  const child = spawn("/usr/bin/python3", ["-u", path, ...args], {
    stdio: ["pipe", "pipe", "inherit"],
  })
  onTestFinished(() => killChild(child))
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`${script} exited with ${String(code)} before printing its endpoint`)
  })
  const [line] = (await Promise.race([once(lines, "line"), exited])) as [string]
  lines.close()
  return { child, endpoint: line.trim() }
}

/** A promise with its resolve function, for handlers that wait for the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}
