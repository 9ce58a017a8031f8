/**
 * Which peer servers of `bench/peers/work-queue.ts` answer on loopback. Shared with
 * `bench/run.ts`, which runs the peers benchmark only when at least one of them does.
 */
import { connect } from "node:net"

export const HOST = "127.0.0.1"

export type PeerName = "rabbitmq" | "nats" | "bullmq"

export interface Peer {
  name: PeerName
  /** The server behind it, as `bash bench/peers/setup.sh` starts it. */
  server: string
  port: number
}

export const PEERS: readonly Peer[] = [
  { name: "rabbitmq", server: "RabbitMQ", port: 5672 },
  { name: "nats", server: "NATS JetStream", port: 4222 },
  { name: "bullmq", server: "Redis (AOF)", port: 6379 },
]

export const SETUP_HINT = "start the peer servers with: bash bench/peers/setup.sh"

/** True when something accepts a TCP connection on HOST:`port` within `timeoutMs`. */
export function answers(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port })
    const done = (up: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(up)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })
}

/** Every peer with whether its server answers. */
export async function probePeers(): Promise<(Peer & { up: boolean })[]> {
  return Promise.all(PEERS.map(async (p) => ({ ...p, up: await answers(p.port) })))
}

/** The value of one `CONFIG GET` parameter of the Redis on HOST:6379 ("?" when unknown). */
export function redisConfig(key: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port: 6379 })
    let reply = ""
    const done = (value: string): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(value)
    }
    const timer = setTimeout(() => done("?"), timeoutMs)
    socket.once("error", () => done("?"))
    socket.once("connect", () => {
      const args = ["CONFIG", "GET", key]
      socket.write(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join("")}`)
    })
    // The reply: *2 $<n> <key> $<n> <value>, each line ending in \r\n.
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("utf8")
      const lines = reply.split("\r\n")
      if (lines.length >= 6) done(lines[4] ?? "?")
      else if (reply.startsWith("-") || reply.startsWith("*0")) done("?")
    })
  })
}
