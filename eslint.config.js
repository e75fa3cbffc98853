// @ts-check
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "data/", "**/*.js", "!eslint.config.js"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ["eslint.config.js", "vitest.config.ts"] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/require-await": "off",
    },
  },
  // Imports point one way: cli, api → mail → queue, db. queue/ could be published alone.
  {
    files: ["src/queue/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: ["../db/*", "../mail/*", "../api/*", "../cli/*", "../main.js"] },
      ],
    },
  },
  {
    files: ["src/db/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { patterns: ["../mail/*", "../api/*", "../cli/*", "../main.js"] }],
    },
  },
  {
    files: ["src/mail/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { patterns: ["../api/*", "../cli/*", "../main.js", "../../api/*"] }],
    },
  },
);
