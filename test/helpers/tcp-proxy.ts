import { connect, createServer, type Socket } from "node:net"
import { onTestFinished } from "vitest"

/** A loopback TCP proxy that records every byte it forwards, to look at what is on the wire. */
export async function tcpProxy(target: string): Promise<{ endpoint: string; captured(): Buffer }> {
  const url = new URL(target.replace(/^tcp:/, "http:"))
  const chunks: Buffer[] = []
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(Number(url.port), url.hostname)
    sockets.add(client).add(upstream)
    client.on("data", (d) => chunks.push(d))
    upstream.on("data", (d) => chunks.push(d))
    client.pipe(upstream).pipe(client)
    const end = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.on("error", end).on("close", end)
    upstream.on("error", end).on("close", end)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  onTestFinished(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  return { endpoint: `tcp://127.0.0.1:${port}`, captured: () => Buffer.concat(chunks) }
}
