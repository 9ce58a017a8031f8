/**
 * The rules `npm run check:pack` applies to the tarball, each shown failing on a list that breaks
 * it, and the repository's own markdown checked against the files package.json ships.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import {
  entryPoints,
  missingSources,
  packProblems,
  relativeLinks,
  resolveLink,
  type PackageManifest,
} from "./pack-rules.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))

const manifest: PackageManifest = {
  exports: {
    ".": { types: "./dist/patterns/index.d.ts", default: "./dist/patterns/index.js" },
    "./lib": { types: "./dist/lib/index.d.ts", default: "./dist/lib/index.js" },
  },
  bin: { pirate: "./bin/pirate.js" },
}

const good: Record<string, string> = {
  "package.json": "{}",
  "README.md": "See [the protocol](docs/protocol.md#frames) and [issues](https://example.org/x).",
  LICENSE: "MIT",
  "CHANGELOG.md": "# Changelog",
  "bin/pirate.js": "",
  "dist/bin/pirate.js": "",
  "dist/patterns/index.js": "",
  "dist/patterns/index.d.ts": "",
  "dist/lib/index.js": "",
  "dist/lib/index.d.ts": "",
  "docs/protocol.md": "Back to the [README](../README.md#sender).",
}

function problems(files: Record<string, string>): string[] {
  return packProblems(Object.keys(files), manifest, (path) => {
    const text = files[path]
    if (text === undefined) throw new Error(`read of an unlisted file ${path}`)
    return text
  })
}

function without(...paths: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(good).filter(([path]) => !paths.includes(path)))
}

describe("packProblems", () => {
  it("passes a complete package", () => {
    expect(problems(good)).toEqual([])
  })

  it.each([
    "LICENSE",
    "CHANGELOG.md",
    "README.md",
    "bin/pirate.js",
    "dist/bin/pirate.js",
    "dist/lib/index.d.ts",
    "dist/patterns/index.js",
  ])("requires %s", (path) => {
    expect(problems(without(path))).toContain(`${path} is missing`)
  })

  it("requires docs/", () => {
    expect(problems(without("docs/protocol.md"))).toEqual(
      expect.arrayContaining(["docs/ is missing: the README links to it"]),
    )
  })

  it("reports a README link to a file the package does not carry", () => {
    const files = { ...good, "README.md": "Read [the demo](docs/demo.md) and ![x](./img/a.png)." }
    expect(problems(files)).toEqual([
      "README.md links to docs/demo.md, which is not in the package",
      "README.md links to ./img/a.png, which is not in the package",
    ])
  })

  it("reports links that leave the package, from docs too", () => {
    const files = { ...good, "docs/protocol.md": "The [fixture](../test/fixtures/ppx_worker.py)." }
    expect(problems(files)).toEqual([
      "docs/protocol.md links to ../test/fixtures/ppx_worker.py, which is not in the package",
    ])
    const outside = { ...good, "README.md": "[up](../other/README.md)" }
    expect(problems(outside)).toEqual([
      "README.md links to ../other/README.md, outside the package",
    ])
  })

  it("reports a source map whose sources are not packed, and passes one that embeds them", () => {
    const map = (extra: object) =>
      JSON.stringify({ version: 3, sources: ["../../lib/codec.ts"], mappings: "", ...extra })
    expect(problems({ ...good, "dist/lib/codec.js.map": map({}) })).toEqual([
      "dist/lib/codec.js.map maps ../../lib/codec.ts, which is not in the package",
    ])
    expect(problems({ ...good, "dist/lib/codec.js.map": map({}), "lib/codec.ts": "" })).toEqual([])
    expect(
      problems({ ...good, "dist/lib/codec.js.map": map({ sourcesContent: ["export {}"] }) }),
    ).toEqual([])
  })

  it.each([
    "test/lib/codec.test.ts",
    "bench/results/run.jsonl",
    "dist/test/readme.test.js",
    "dist/bench/journal.js",
    ".ci/run",
    "npm-debug.log",
    "zeromq-pirate-0.1.0.tgz",
  ])("refuses %s", (path) => {
    expect(problems({ ...good, [path]: "" })).toEqual([`${path} must not be published`])
  })
})

describe("markdown links", () => {
  it("finds relative links outside code, not URLs or anchors", () => {
    const text = [
      "[a](docs/a.md) [b](<docs/b c.md>) [c](#here) [d](https://x.org) [e](mailto:x@y.z)",
      '![i](img/i.png "title") <a href="docs/h.md">h</a>',
      "`[not](code.md)`",
      "```md",
      "[not](fenced.md)",
      "```",
      "[ref]: docs/ref.md",
    ].join("\n")
    expect(relativeLinks(text)).toEqual([
      "docs/a.md",
      "docs/b c.md",
      "img/i.png",
      "docs/ref.md",
      "docs/h.md",
    ])
  })

  it("resolves against the linking file and drops anchors", () => {
    expect(resolveLink("docs/journal.md", "bench-journal.md#format-4")).toBe(
      "docs/bench-journal.md",
    )
    expect(resolveLink("docs/benchmarks.md", "../README.md#tuning")).toBe("README.md")
    expect(resolveLink("README.md", "docs/")).toBe("docs")
    expect(resolveLink("docs/a.md", "../../x.md")).toBeUndefined()
  })

  it("names a source that is neither listed nor embedded", () => {
    const listed = new Set(["lib/a.ts"])
    const map = JSON.stringify({ sources: ["../../lib/a.ts", "../../lib/b.ts"] })
    expect(missingSources("dist/lib/a.js.map", map, listed)).toEqual(["../../lib/b.ts"])
  })
})

describe("this repository", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as PackageManifest & {
    files: string[]
  }

  it("ships every file its own markdown links to", () => {
    // The files package.json ships that markdown can link to (dist/ is built, not linked).
    const shipped = ["README.md", "LICENSE", "CHANGELOG.md", "package.json"]
    for (const entry of pkg.files.filter((f) => !f.startsWith("dist"))) {
      const path = join(ROOT, entry)
      if (statSync(path).isDirectory()) {
        shipped.push(
          ...readdirSync(path, { recursive: true, encoding: "utf8" }).map(
            (name) => `${entry}/${name}`,
          ),
        )
      } else shipped.push(entry)
    }
    expect(shipped).toEqual(expect.arrayContaining(["CHANGELOG.md", "docs/protocol.md"]))
    const broken = shipped
      .filter((path) => path.endsWith(".md"))
      .flatMap((path) =>
        relativeLinks(readFileSync(join(ROOT, path), "utf8"))
          .filter((target) => {
            const resolved = resolveLink(path, target)
            return resolved === undefined || !shipped.includes(resolved)
          })
          .map((target) => `${path} → ${target}`),
      )
    expect(broken).toEqual([])
  })

  it("names its entry points and the CLI", () => {
    expect(entryPoints(pkg)).toEqual(
      expect.arrayContaining([
        "dist/patterns/index.js",
        "dist/patterns/index.d.ts",
        "dist/lib/index.js",
        "dist/lib/index.d.ts",
        "bin/pirate.js",
      ]),
    )
  })
})
