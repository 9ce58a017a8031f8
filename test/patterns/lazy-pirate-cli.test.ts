/** `pirate request`, run as a user would: `node bin/pirate.js request …`. */
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { deadEndpoint, startServer } from "../helpers/lazy-helpers.js"
import { pythonMissing, requirePrereq } from "../helpers/prereq.js"
import { spawnLines, startPythonEcho } from "../helpers/processes.js"

const PIRATE = fileURLToPath(new URL("../../bin/pirate.js", import.meta.url))

async function pirate(
  args: string[],
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const run = spawnLines(process.execPath, [PIRATE, ...args], { name: `pirate ${args.join(" ")}` })
  const code = await run.exited
  return { code, stdout: run.lines.map((line) => `${line}\n`).join(""), stderr: run.stderr() }
}

describe("pirate request", () => {
  it("prints the reply as JSON and exits 0", async () => {
    const server = await startServer({
      handler: (payload) => ({ got: payload, bin: Buffer.from("bytes") }),
    })
    // Independent runs go in parallel: most of their time is node and tsx starting up.
    const [json, text] = await Promise.all([
      pirate(["request", "--connect", server.endpoint, '{"a":[1,2]}']),
      pirate(["request", "-c", server.endpoint, "-t", "1000", "not json"]),
    ])
    expect(json).toMatchObject({ code: 0, stderr: "" })
    expect(JSON.parse(json.stdout)).toEqual({ got: { a: [1, 2] }, bin: "bytes" })
    expect(text.code).toBe(0)
    expect(JSON.parse(text.stdout)).toEqual({ got: "not json", bin: "bytes" })
  })

  it.runIf(requirePrereq("pirate request --raw with Python", pythonMissing("zmq")))(
    "--raw talks to a plain REP server and prints the reply as text",
    async () => {
      const { endpoint } = await startPythonEcho()
      const result = await pirate(["request", "--raw", "--connect", endpoint, "hello raw"])
      expect(result).toEqual({ code: 0, stdout: "hello raw\n", stderr: "" })
    },
  )

  it("gives up with one line on stderr and a non-zero exit status", async () => {
    const [a, b] = [await deadEndpoint(), await deadEndpoint()]
    const started = performance.now()
    const result = await pirate([
      "request",
      "-c",
      a,
      "-c",
      b,
      "--timeout",
      "100",
      "--retries",
      "2",
      "x",
    ])
    expect(result.code).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr.trim().split("\n")).toHaveLength(1)
    expect(result.stderr).toContain(a)
    expect(result.stderr).toContain(b)
    expect(result.stderr).toContain("2 tries of 100 ms")
    expect(performance.now() - started).toBeLessThan(5_000)
  })

  it("reports a handler error and usage errors on one line", async () => {
    const server = await startServer({
      handler: () => {
        throw new Error("out of stock")
      },
    })
    const [remote, noConnect, badTimeout] = await Promise.all([
      pirate(["request", "--connect", server.endpoint, "1"]),
      pirate(["request", "x"]),
      pirate(["request", "-c", server.endpoint, "--timeout", "0", "x"]),
    ])
    expect(remote.code).toBe(1)
    expect(remote.stderr).toBe("pirate request: the server's handler failed: out of stock\n")
    expect(noConnect.code).toBe(2)
    expect(noConnect.stderr).toMatch(/--connect/)
    expect(badTimeout.code).toBe(2)
    expect(badTimeout.stderr).toMatch(/--timeout/)
  })

  it("--help describes every option", async () => {
    const help = await pirate(["request", "--help"])
    expect(help.code).toBe(0)
    for (const option of [
      "--connect",
      "--timeout",
      "--retries",
      "--raw",
      "PAYLOAD",
      "Exit status",
    ]) {
      expect(help.stdout).toContain(option)
    }
  })
})
