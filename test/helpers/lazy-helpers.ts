/** Helpers of the Lazy Pirate tests: servers and clients that are closed when the test finishes. */
import { once } from "node:events"
import { createServer } from "node:net"
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

/** A promise with its resolve function, for handlers that wait for the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}
