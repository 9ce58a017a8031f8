import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "bin/pirate.js", "bench/results/**", ".tmp/**"] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ["*.js", "vitest.config.ts"] } },
    },
    rules: {
      "@typescript-eslint/switch-exhaustiveness-check": "error",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-unnecessary-condition": "off",
      "@typescript-eslint/no-confusing-void-expression": "off",
      // Interface implementations (journals) are async without awaiting anything.
      "@typescript-eslint/require-await": "off",
    },
  },
  // Layers (README, "Layout"): lib imports nothing from patterns; a pattern never reaches into
  // another's modules; bin/ and bench/ use the package's entry points only, as a user would.
  {
    files: ["lib/**/*.ts"],
    rules: {
      "@typescript-eslint/no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/patterns/**"], message: "lib/ must not import patterns/." }] },
      ],
    },
  },
  ...[
    ["lazy-pirate", "paranoid-pirate"],
    ["paranoid-pirate", "lazy-pirate"],
  ].map(([self, other]) => ({
    files: [`patterns/${self}/**/*.ts`],
    rules: {
      "@typescript-eslint/no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: [`**/${other}/**`],
              message: `${self} must not reach into ${other}'s modules.`,
            },
          ],
        },
      ],
    },
  })),
  // One config per directory depth: a relative specifier means a different directory at each
  // (bench/lib/ is the benchmarks' own helpers, ../lib/ from bench/ is the package's lib/).
  ...[1, 2, 3].map((depth) => ({
    files: [`bin/${"*/".repeat(depth - 1)}*.ts`, `bench/${"*/".repeat(depth - 1)}*.ts`],
    rules: {
      "@typescript-eslint/no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: `^(\\.\\./){${depth}}(lib|patterns)/(?!index\\.js$)`,
              message:
                "bin/ and bench/ import only the package's entry points: patterns/index.js (zeromq-pirate) and lib/index.js (zeromq-pirate/lib).",
            },
          ],
        },
      ],
    },
  })),
  // Third-party boundaries of the shipped code: msgpackr only in lib/codec.ts, LevelDB only in
  // lib/journal/ (tests and benchmarks may use them for white-box checks and baselines).
  ...[
    { files: ["lib/codec.ts"], banned: ["level"] },
    { files: ["lib/journal/**/*.ts"], banned: ["msgpackr"] },
    {
      files: ["lib/**/*.ts", "patterns/**/*.ts", "bin/**/*.ts"],
      ignores: ["lib/codec.ts", "lib/journal/**"],
      banned: ["msgpackr", "level"],
    },
  ].map(({ banned, ...where }) => ({
    ...where,
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [
            ...(banned.includes("msgpackr")
              ? [{ name: "msgpackr", message: "msgpackr is used only in lib/codec.ts." }]
              : []),
            ...(banned.includes("level")
              ? ["level", "classic-level", "abstract-level"].map((name) => ({
                  name,
                  message: "LevelDB is used only in lib/journal/.",
                }))
              : []),
          ],
        },
      ],
    },
  })),
  {
    files: ["test/**/*.ts", "bench/**/*.ts"],
    rules: {
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  { files: ["**/*.js"], ...tseslint.configs.disableTypeChecked },
)
