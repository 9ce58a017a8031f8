/** CURVE key files for the CLI: `pirate keygen`, and the `--curve-*` options of the roles. */
import { readFileSync } from "node:fs"
import {
  generateKeyPair,
  type CurveClientOptions,
  type CurveServerOptions,
  type KeyPair,
} from "../../patterns/index.js"
import { UsageError, errorMessage } from "../cli.js"

/** The options every role's command adds for CURVE. */
export const CURVE_OPTIONS = {
  "curve-keys": { type: "string" },
  "curve-server-key": { type: "string" },
  "curve-allow": { type: "string" },
} as const

export const CURVE_SERVER_HELP = `      --curve-keys FILE        encrypt and authenticate with CURVE: this side's key pair,
                               a JSON file { "publicKey", "secretKey" } (pirate keygen)
      --curve-allow FILE       only peers whose public key is listed in FILE may connect
                               (one Z85 key per line, lines starting with # are
                               comments; or the JSON of pirate keygen files); without
                               it any peer that knows the public key may connect`

export const CURVE_CLIENT_HELP = `      --curve-keys FILE        encrypt and authenticate with CURVE: this side's key pair,
                               a JSON file { "publicKey", "secretKey" } (pirate keygen)
      --curve-server-key KEY   the server's Z85 public key (or a file holding it)`

function readText(flag: string, file: string): string {
  try {
    return readFileSync(file, "utf8")
  } catch (err) {
    throw new UsageError(`--${flag}: cannot read ${file}: ${errorMessage(err)}`)
  }
}

/** Reads a key pair file written by `pirate keygen`. */
export function readKeyPair(file: string): KeyPair {
  const text = readText("curve-keys", file)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new UsageError(
      `--curve-keys: ${file} is not JSON; make one with "pirate keygen --out ${file}"`,
    )
  }
  const p = parsed as Partial<KeyPair> | null
  if (typeof p?.publicKey !== "string" || typeof p.secretKey !== "string") {
    throw new UsageError(
      `--curve-keys: ${file} must hold { "publicKey", "secretKey" } (pirate keygen)`,
    )
  }
  return { publicKey: p.publicKey, secretKey: p.secretKey }
}

/** Public keys from a file: one per line (# comments), or JSON key pairs / a JSON array. */
export function readPublicKeys(flag: string, file: string): string[] {
  const text = readText(flag, file).trim()
  if (text.startsWith("{") || text.startsWith("[")) {
    try {
      const parsed = JSON.parse(text) as unknown
      const list = Array.isArray(parsed) ? parsed : [parsed]
      return list.map((k) =>
        typeof k === "string" ? k : String((k as { publicKey?: unknown }).publicKey),
      )
    } catch {
      throw new UsageError(`--${flag}: ${file} is not valid JSON`)
    }
  }
  return (
    text
      .split("\n")
      .map((line) => line.trim())
      // Z85 keys may contain "#", so only whole lines are comments.
      .filter((line) => line !== "" && !line.startsWith("#"))
  )
}

type CurveValues = { "curve-keys"?: string; "curve-server-key"?: string; "curve-allow"?: string }

/** CURVE options of a binding role from the command line, or undefined. */
export function curveServer(values: CurveValues): CurveServerOptions | undefined {
  if (values["curve-server-key"] !== undefined)
    throw new UsageError("--curve-server-key is for connecting roles")
  if (values["curve-keys"] === undefined) {
    if (values["curve-allow"] !== undefined)
      throw new UsageError("--curve-allow needs --curve-keys")
    return undefined
  }
  const pair = readKeyPair(values["curve-keys"])
  const allow = values["curve-allow"]
  return allow === undefined ? pair : { ...pair, allow: readPublicKeys("curve-allow", allow) }
}

/** CURVE options of a connecting role from the command line, or undefined. */
export function curveClient(values: CurveValues): CurveClientOptions | undefined {
  if (values["curve-allow"] !== undefined)
    throw new UsageError("--curve-allow is for binding roles")
  const keys = values["curve-keys"]
  const server = values["curve-server-key"]
  if (keys === undefined && server === undefined) return undefined
  if (keys === undefined || server === undefined)
    throw new UsageError("CURVE needs both --curve-keys and --curve-server-key")
  const serverKey =
    server.length === 40 ? server : (readPublicKeys("curve-server-key", server)[0] ?? "")
  return { ...readKeyPair(keys), serverKey }
}

export { generateKeyPair }
