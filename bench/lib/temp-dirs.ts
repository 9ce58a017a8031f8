/**
 * The benchmarks' temp directories (`$TMPDIR/pirate-bench-<name>-*`): removed after each run by
 * `removeDir()`, and by an exit hook when the benchmark stops early.
 */
import { rmSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

const tempDirs = new Set<string>()
process.once("exit", () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

/** A new directory `$TMPDIR/pirate-bench-<name>-XXXXXX`, removed at exit at the latest. */
export async function tempDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `pirate-bench-${name}-`))
  tempDirs.add(dir)
  return dir
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  tempDirs.delete(dir)
}
