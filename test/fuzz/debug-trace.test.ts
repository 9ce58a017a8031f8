/**
 * Drops are visible with `NODE_DEBUG=pirate`: a child process opens a sender, a raw peer sends
 * it malformed frames, and the child's stderr must carry one "dropped" line per drop.
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { beforeAll, expect, it } from "vitest"
import { guardProcess } from "./guard.js"

guardProcess()

const zeromq = pathToFileURL(createRequire(import.meta.url).resolve("zeromq")).href
const patterns = new URL("../../patterns/index.ts", import.meta.url).href

// The child: a sender, and a DEALER that sends an unknown command and an ack whose envelope is
// not the sender's; it exits once stats() counted both drops.
const script = `
import { Dealer } from ${JSON.stringify(zeromq)}
import { Sender } from ${JSON.stringify(patterns)}
const sender = await Sender.open({ bind: "tcp://127.0.0.1:*" })
const peer = new Dealer({ linger: 0 })
peer.connect(sender.endpoint)
await peer.send(Buffer.from([0x99]))
// ACKS [0x12, envelopes, replies], well packed (one envelope, one 5-byte reply), whose envelope
// is not the sender's
await peer.send([
  Buffer.from([0x12]),
  Buffer.from("\\x0fnot an envelope", "latin1"),
  Buffer.from("\\x00\\x00\\x00\\x05reply", "latin1"),
])
const deadline = Date.now() + 5000
while (sender.stats().dropped < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
process.stdout.write(JSON.stringify({ dropped: sender.stats().dropped }))
peer.close()
await sender.close()
`

let run: { code: number | null; stdout: string; stderr: string }

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), "pirate-trace-"))
  try {
    const file = join(dir, "trace.mts")
    await writeFile(file, script)
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      env: { ...process.env, NODE_DEBUG: "pirate" },
      stdio: ["ignore", "pipe", "pipe"],
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    try {
      const [code] = (await once(child, "exit", { signal: AbortSignal.timeout(9000) })) as [
        number | null,
      ]
      run = { code, stdout, stderr }
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL")
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}, 10_000)

const droppedLines = (): string[] =>
  run.stderr.split("\n").filter((line) => /^PIRATE \d+: .*dropped/.test(line))

it("NODE_DEBUG=pirate traces every dropped frame on stderr", () => {
  expect(run.code, run.stderr).toBe(0)
  expect(JSON.parse(run.stdout)).toEqual({ dropped: 2 })
  expect(droppedLines(), run.stderr).toHaveLength(2)
  expect(run.stderr).toMatch(/PIRATE \d+: sender: dropped from [0-9a-f]+: unknown command 0x99/)
  expect(run.stderr).toMatch(
    /PIRATE \d+: sender: dropped from \S+: reply with an envelope that is not ours/,
  )
})

it("every dropped line names the peer's routing id", () => {
  const lines = droppedLines()
  expect(lines, run.stderr).toHaveLength(2)
  for (const line of lines) expect(line).toMatch(/dropped from [0-9a-f]+: /)
})
