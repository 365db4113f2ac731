// Generates murmurhash-vectors.json: the bucket the platform's TypeScript services compute for
// each (tenant, flag) pair, using the exact npm package they use.
//
//   mkdir -p /tmp/mm && cd /tmp/mm && npm install murmurhash@2.0.1
//   NODE_PATH=/tmp/mm/node_modules node generate-vectors.js > murmurhash-vectors.json
//
// Inputs are deterministic (no randomness), so the file regenerates byte for byte.
"use strict";
const murmurhash = require("murmurhash");

const flags = [
  "supplier.realtime.sync",
  "risk.auto.reject",
  "matching.ai.boost",
  "settlement.auto.reconcile",
  "admin.v2",
  "",
  "x",
  "flag-with-a-rather-long-name.for.testing.block.boundaries",
];
const tenants = [""];
for (let i = 0; i < 40; i++) tenants.push(`tenant-${i}`);
for (let i = 0; i < 10; i++) tenants.push(`${i * 7919}`);
tenants.push("a", "ab", "abc", "abcd", "abcde");
tenants.push("酒店-上海-001", "東京", "🏨-hotel", "café", "naïve-ü", "\u0000nul", " spaced tenant ");
tenants.push("00000000-0000-4000-8000-000000000000", "3f2504e0-4f89-11d3-9a0c-0305e82c3301");

const vectors = [];
for (const flag of flags) {
  for (const tenant of tenants) {
    const hash = murmurhash(tenant + flag);
    vectors.push({ tenant, flag, hash, bucket: hash % 100 });
  }
}
// Whole strings from the package's own documentation-style examples.
for (const text of ["a", "hello", "tenant-1supplier.realtime.sync"]) {
  const hash = murmurhash(text);
  vectors.push({ tenant: text, flag: "", hash, bucket: hash % 100 });
}
process.stdout.write(JSON.stringify({ package: "murmurhash@2.0.1", vectors }, null, 1) + "\n");
