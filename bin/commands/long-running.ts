/** What `pirate queue` and `pirate worker` share: run until a signal, and option errors. */
import { PirateError } from "../../lib/index.js"
import { UsageError, cliOptionNames, isAddressInUse } from "../cli.js"

export interface LongRunning {
  /** The command's name, for messages: `pirate NAME: …`. */
  name: string
  /**
   * Opens the role; a rejection stops what it started and ends the command (exit status 1, or 2
   * for a `UsageError`).
   */
  start(): Promise<void>
  /** Closes the role (draining what it must); called once, after a signal, a fatal error or a failed start. */
  stop(): Promise<void>
  /** Hooks the role's fatal errors (its `"error"` event) to `fail`, which stops it with status 1. */
  onFatal?(fail: (message: string) => void): void
}

/**
 * Starts, waits for SIGINT or SIGTERM (or a fatal error), stops. Resolves with the exit status:
 * 0 after a signal, 1 after a fatal error. A second signal while stopping exits at once (1).
 */
export async function runUntilSignal(role: LongRunning): Promise<number> {
  let finish!: (why: { fatal?: string }) => void
  const finished = new Promise<{ fatal?: string }>((resolve) => (finish = resolve))
  let signals = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++
    if (signals === 1) return finish({})
    process.stderr.write(`pirate ${role.name}: ${signal} while closing, exiting at once\n`)
    process.exit(1)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  role.onFatal?.((message) => finish({ fatal: message }))
  try {
    try {
      await role.start()
    } catch (err) {
      // What started before the failure (the queue, when its metrics port is in use) would keep
      // the process alive: stop it, and report the failure that matters.
      await role.stop().catch(() => undefined)
      throw err
    }
    const why = await finished
    if (why.fatal !== undefined) process.stderr.write(`pirate ${role.name}: ${why.fatal}\n`)
    await role.stop()
    return why.fatal === undefined ? 0 : 1
  } finally {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
  }
}

/**
 * A constructor's TypeError or RangeError (which names the option as `'heartbeatInterval'`) as
 * a `UsageError` that names it the way the command line spells it (`--heartbeat-interval`).
 */
export function optionError(err: unknown): unknown {
  if (!(err instanceof TypeError || err instanceof RangeError)) return err
  return new UsageError(cliOptionNames(err.message))
}

/**
 * Serves the metrics on `--metrics-port`: an error of `serve()` for a port in use names that
 * option (`PIRATE_ADDRESS_IN_USE`), as a role's does for the endpoints it binds.
 */
export async function serveOnMetricsPort<T>(port: number, serve: () => Promise<T>): Promise<T> {
  try {
    return await serve()
  } catch (err) {
    if (!isAddressInUse(err)) throw err
    const endpoint = `http://127.0.0.1:${port}`
    throw new PirateError(
      "PIRATE_ADDRESS_IN_USE",
      `cannot bind 'metricsPort' to ${endpoint}: the address is in use; stop what holds it or choose another port`,
      { cause: err.cause },
    )
  }
}
