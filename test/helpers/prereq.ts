/**
 * Tests that need something outside Node (root, iproute2, Debian's python3 with python3-zmq …)
 * ask for it here. Where it is missing the test is skipped, saying why; under `CI=true` the run
 * fails instead, so that a CI that lost a prerequisite cannot pass by skipping.
 */
import { execFileSync } from "node:child_process"

/** True under `CI=true`: a missing prerequisite is an error, not a skip. */
export const STRICT = process.env["CI"] === "true"

/**
 * Checks a prerequisite of the tests in `name`: `missing` says why it is unavailable, or is
 * `undefined` when it is there.
 *
 * @returns true when the tests can run; false (after printing why) when they are to be skipped
 * @throws Error under `CI=true` when the prerequisite is missing
 */
export function requirePrereq(name: string, missing: string | undefined): boolean {
  if (missing === undefined) return true
  if (STRICT) throw new Error(`${name}: ${missing} (CI=true: a missing prerequisite fails the run)`)
  console.warn(`${name}: skipped, ${missing}`)
  return false
}

/** The interpreter the Python fixtures run with (Debian's, which has python3-zmq and python3-msgpack). */
export const PYTHON = "/usr/bin/python3"

/** Why {@link PYTHON} cannot import `modules`, or undefined when it can. */
export function pythonMissing(...modules: string[]): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", modules.map((m) => `import ${m}`).join("; ")], { stdio: "pipe" })
    return undefined
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer }
    if (e.code === "ENOENT") return `${PYTHON} is missing`
    const said = e.stderr?.toString().trim().split("\n").at(-1) ?? String(err)
    return `${PYTHON} cannot import ${modules.join(", ")} (apt-get install ${modules.map((m) => `python3-${m}`).join(" ")}): ${said}`
  }
}
