import { describe, expect, it } from "vitest"
import { UsageError, parse } from "../../bin/cli.js"

const options = {
  "curve-server-key": { type: "string" },
  connect: { type: "string", short: "c" },
  raw: { type: "boolean" },
} as const

describe("CLI argument parsing", () => {
  it("takes a value that starts with a dash (a Z85 key such as -x2…) as the value", () => {
    const { values, positionals } = parse(
      ["--curve-server-key", "-x2Kq", "-c", "-y", "--raw", "payload"],
      options,
    )
    expect(values["curve-server-key"]).toBe("-x2Kq")
    expect(values.connect).toBe("-y")
    expect(values.raw).toBe(true)
    expect(positionals).toEqual(["payload"])
  })

  it("still refuses an option given where a value belongs", () => {
    expect(() => parse(["--curve-server-key", "--connect", "x"], options)).toThrow(UsageError)
    expect(() => parse(["--curve-server-key", "-c", "x"], options)).toThrow(UsageError)
  })

  it("leaves what follows -- alone", () => {
    const { positionals } = parse(["--", "--curve-server-key", "-x"], options)
    expect(positionals).toEqual(["--curve-server-key", "-x"])
  })
})
