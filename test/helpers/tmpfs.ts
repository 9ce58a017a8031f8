import { execFile } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { onTestFinished, type TestContext } from "vitest"
import { errorMessage } from "../../lib/errors.js"
import { requirePrereq } from "./prereq.js"

const run = promisify(execFile)

/**
 * Mounts a tmpfs of `sizeMiB` under a new temporary directory, for tests that fill a disk, and
 * unmounts it when the test finishes. Where mounting is not permitted (not root, no
 * CAP_SYS_ADMIN) the test is skipped, saying why; under `CI=true` it fails instead (see prereq.ts).
 *
 * @returns the mount point
 */
export async function tmpfs(ctx: TestContext, sizeMiB: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-tmpfs-"))
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m`, "tmpfs", dir])
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    const said = (err as { stderr?: string }).stderr?.trim() || errorMessage(err)
    const reason = `cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): ${said.split("\n")[0] ?? ""}`
    requirePrereq(ctx.task.name, reason)
    ctx.skip(reason)
  }
  onTestFinished(async () => {
    // Lazy: a journal or a child process of the test may still hold files in it.
    await run("umount", ["--lazy", dir])
    await rm(dir, { recursive: true, force: true })
  })
  return dir
}
