/**
 * Every TypeScript example in the README that imports the package runs as a program (through
 * tsx, in a fresh temporary directory) and must exit with status 0 on its own.
 */
import { execFile } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it, onTestFinished } from "vitest"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const readme = await readFile(join(ROOT, "README.md"), "utf8")
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)]
  .map((m) => m[1] ?? "")
  .filter((code) => /from "zeromq-pirate(\/lib)?"/.test(code))

describe("README examples", () => {
  it("has runnable examples", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5)
  })

  it.each(blocks.map((code, i) => [firstLine(code, i), code] as const))(
    "runs: %s",
    { timeout: 30_000 },
    async (_name, code) => {
      const dir = await mkdtemp(join(tmpdir(), "pirate-readme-"))
      onTestFinished(() => rm(dir, { recursive: true, force: true }))
      const program = code
        .replaceAll(
          'from "zeromq-pirate/lib"',
          `from ${JSON.stringify(join(ROOT, "lib/index.ts"))}`,
        )
        .replaceAll(
          'from "zeromq-pirate"',
          `from ${JSON.stringify(join(ROOT, "patterns/index.ts"))}`,
        )
      const file = join(dir, "example.mts") // ESM, for top-level await
      await writeFile(file, program)
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", import.meta.resolve("tsx"), file],
        {
          cwd: dir,
          timeout: 25_000,
          env: { ...process.env, NODE_OPTIONS: "" },
        },
      )
      expect(stdout.length).toBeGreaterThan(0) // every example prints what it got
    },
  )
})

function firstLine(code: string, i: number): string {
  const line = code
    .split("\n")
    .find((l) => !l.startsWith("import") && l.trim() !== "" && !l.startsWith("//"))
  return `#${i + 1} ${line?.slice(0, 60) ?? ""}`
}
